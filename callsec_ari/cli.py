"""``callsec`` command line: subcommands only, no logic.

Each feature registers its own subcommands (``register(subparsers)``) and handlers of the shape
``handler(args, settings) -> int``. Exit codes: 0 ok, 1 failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from callsec_ari import __version__
from callsec_ari.config import Settings
from callsec_ari.config.discovery import find_config
from callsec_ari.config_check import load_settings
from callsec_ari.core.errors import CallsecError, ConfigError

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace, Settings], int]


def _cmd_check_config(args: argparse.Namespace, settings: Settings) -> int:
    from callsec_ari.config_check import check_everything

    check_everything(settings, connect=args.connect)
    count = len(settings.policies)
    connected = "; database and key ring checked" if args.connect else ""
    print(f"ok: {args.config} ({count} polic{'y' if count == 1 else 'ies'}{connected})")
    return 0


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from callsec_ari.app import run_forever

    return run_forever(settings)


def _register_core(sub: Any) -> None:
    p = sub.add_parser("run", help="run the ARI app, FastAGI server and HTTP API")
    p.set_defaults(handler=_cmd_run)
    p = sub.add_parser("check-config", help="run every check the commands run on the "
                       "configuration and report the first error (exit 2, naming the key)")
    p.add_argument("--connect", action="store_true",
                   help="also open the database and the key ring as the commands do (schema at "
                   "the newest migration, keys present and matching)")
    p.set_defaults(handler=_cmd_check_config)
    from callsec_ari.assets import register as register_assets

    register_assets(sub)  # install-assets (needs no configuration)


def _registrars() -> list[Callable[[Any], None]]:
    registrars: list[Callable[[Any], None]] = [_register_core]
    # Feature slices register their own commands; imported lazily so `--help` stays fast.
    import importlib

    for module in ("callsec_ari.store.cli", "callsec_ari.access.cli", "callsec_ari.doctor",
                   "callsec_ari.status_cli", "callsec_ari.webhooks.cli", "callsec_ari.flows"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        registrars.append(mod.register)
    return registrars


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callsec", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default=None,
                        help="configuration file (default: $CALLSEC_CONFIG, else"
                        " /etc/callsec/callsec.conf, else ./config/callsec.conf)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings: Settings | None = None
    try:
        if getattr(args, "needs_config", True):  # install-assets runs before any config exists
            args.config = str(find_config(args.config))
            settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"callsec: configuration error: {exc.message}", file=sys.stderr)
        return 2
    handler: Callable[[argparse.Namespace, Any], int] = args.handler
    try:
        return handler(args, settings)
    except ConfigError as exc:
        print(f"callsec: configuration error: {exc.message}", file=sys.stderr)
        return 2
    except CallsecError as exc:
        print(f"callsec: {exc.error_id}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: one line, never a traceback (unless asked for)
        return _unexpected(exc)


#: ``CALLSEC_TRACEBACK=1`` prints the traceback of an unexpected error (as does DEBUG logging).
TRACEBACK_ENV = "CALLSEC_TRACEBACK"


def _kinds(exc: BaseException) -> str:
    """``RuntimeError``; for a task group's error the types inside (``OSError, KeyError``)."""
    if isinstance(exc, BaseExceptionGroup):
        return ", ".join(sorted({_kinds(inner) for inner in exc.exceptions}))
    return type(exc).__name__


def _unexpected(exc: Exception) -> int:
    """An error no command expected: its type only (an exception's text may hold a value, a
    URL with a password or a key), exit 1. The traceback goes to the log at DEBUG, or to
    stderr with ``CALLSEC_TRACEBACK=1``."""
    print(f"callsec: internal error ({_kinds(exc)}); run with {TRACEBACK_ENV}=1 for details",
          file=sys.stderr)
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    else:
        log.debug("unexpected error", exc_info=exc, extra={"call_id": "-"})
    return 1
