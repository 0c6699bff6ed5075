"""``callsec db|customers|keys|gdpr|audit ...`` subcommands (no logic: it lives in the store)."""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO

from alembic.util import CommandError as AlembicCommandError

from callsec_ari.config import Settings
from callsec_ari.core.errors import InvalidInput
from callsec_ari.store import audit_cli
from callsec_ari.store.context import Store, init_keys, open_store
from callsec_ari.store.customers import CustomerData, Name, Phone
from callsec_ari.store.db import current_revision, open_database, upgrade
from callsec_ari.store.gdpr import Gdpr
from callsec_ari.store.vcard import import_vcards, to_vcard


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings, upgrade=False)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _output(output: str | None) -> Iterator[TextIO]:
    """Where an export goes, opened *before* the export runs (and is audited): a path that
    cannot be written is a clear error (exit 1) with nothing exported or audited; the file is
    removed again if the export fails. Personal data: files are created 0600."""
    if output is None:
        yield sys.stdout
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
    except BaseException:
        with suppress(OSError):
            os.unlink(output)
        raise


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    db = open_database(settings, upgrade=False)
    try:
        try:
            upgrade(db, args.revision)
        except AlembicCommandError:
            print(f"callsec: db upgrade: unknown revision {args.revision!r} (see "
                  "callsec_ari/store/migrations/versions; default: head)", file=sys.stderr)
            return 2
        print(f"database at {db.where} is at revision {current_revision(db)}")
    finally:
        db.dispose()
    return 0


def _customers_import(args: argparse.Namespace, settings: Settings) -> int:
    try:
        text = Path(args.file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {args.file}: {type(exc).__name__}") from None
    with _store(settings) as st:
        report = import_vcards(st.customers, text, actor=actor(),
                               default_language=settings.verification.default_language)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for failure in report.failed:
        print(f"skipped {failure}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


def _customers_export(args: argparse.Namespace, settings: Settings) -> int:
    with _output(args.output) as out, _store(settings) as st:
        card = to_vcard(st.customers.get(args.ref))
        out.write(card)
        out.flush()
        st.audit.append(actor(), "customer.export", args.ref, {"format": "vcard4"})
    return 0


#: A TOTP secret of fewer than 80 bits (16 base32 characters) is refused (RFC 4226 4: R6).
TOTP_MIN_CHARS = 16


def normalise_totp_secret(text: str) -> str | None:
    """Base32 without spaces, dashes or padding, upper case; None unless it decodes and has at
    least :data:`TOTP_MIN_CHARS` characters."""
    secret = "".join(text.split()).replace("-", "").upper().rstrip("=")
    if len(secret) < TOTP_MIN_CHARS:
        return None
    try:
        base64.b32decode(secret + "=" * (-len(secret) % 8))
    except (binascii.Error, ValueError):
        return None
    return secret


def _read_totp_secret(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(secret, None), or (None, the option at fault): never from an argument (``ps``,
    shell history), only from standard input or a file."""
    if args.totp_secret_stdin:
        option, text = "--totp-secret-stdin", sys.stdin.readline()
    elif args.totp_secret_file is not None:
        option = "--totp-secret-file"
        try:
            text = Path(args.totp_secret_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"callsec: {option}: cannot read {args.totp_secret_file}: "
                  f"{type(exc).__name__}", file=sys.stderr)
            return None, option
    else:
        return None, None
    secret = normalise_totp_secret(text)
    if secret is None:
        print(f"callsec: {option}: not a base32 TOTP secret of at least {TOTP_MIN_CHARS} "
              "characters (80 bits)", file=sys.stderr)
        return None, option
    return secret, None


class _RemovedSecretOption(argparse.Action):
    """``--totp-secret VALUE`` was removed: refuse it without echoing the value."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.error(f"{option_string} was removed: a secret on the command line is visible in "
                     "ps and the shell history; use --totp-secret-stdin or --totp-secret-file")


def _customers_add(args: argparse.Namespace, settings: Settings) -> int:
    totp_secret, bad_option = _read_totp_secret(args)
    if bad_option is not None:
        return 2
    phones = [Phone(n, "mobile") for n in args.mobile or []]
    phones += [Phone(n, "landline") for n in args.landline or []]
    data = CustomerData(name=Name(args.name, args.given or "", args.family or ""),
                        phones=tuple(phones), email=args.email,
                        language=args.lang or settings.verification.default_language,
                        preferred_method=args.method, customer_number=args.customer_number,
                        totp_secret=totp_secret)
    with _store(settings) as st:
        customer = st.customers.create(data, actor=actor())
    print(customer.ref)
    return 0


def _customers_list(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as st:
        for ref in st.customers.list_refs():
            print(ref)
    return 0


def _keys_init(args: argparse.Namespace, settings: Settings) -> int:
    report = init_keys(settings, upgrade=False)
    if report.created or report.recorded:
        with _store(settings) as st:
            st.audit.append(actor(), "keys.init", f"kek-{st.keyring.current_version():04d}",
                            {"created": report.created, "recorded": report.recorded})
    print(report.summary())
    return 0


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days >= 0:  # also NaN
        raise argparse.ArgumentTypeError("must be 0 or more days")
    return days


def _keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as st:
        report = st.keys.rotate(retire=args.retire, retire_older_than=args.retire_older_than)
        st.audit.append(actor(), "keys.rotate", f"kek-{report.new_version:04d}",
                        {"rewrapped": report.rewrapped, "retired": list(report.retired)})
    retired = "; retired version " + ", ".join(map(str, report.retired)) \
        if report.retired else ""
    print(f"KEK version {report.new_version}: {report.rewrapped} data keys re-wrapped{retired}")
    return 0


def _keys_retire(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as st:
        st.keys.rewrap_all(st.keyring.current_version())
        st.keys.retire(args.version)
        st.audit.append(actor(), "keys.retire", f"kek-{args.version:04d}", {})
    print(f"KEK version {args.version} retired")
    return 0


def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as st:
        counts = st.keys.counts_by_version()
        current = st.keyring.current_version()
        for version in st.keyring.versions():
            mark = " (current)" if version == current else ""
            print(f"kek-{version:04d}: {counts.get(version, 0)} data keys{mark}")
    return 0


def _gdpr_export(args: argparse.Namespace, settings: Settings) -> int:
    with _output(args.output) as out, _store(settings) as st:
        document = Gdpr(st).export(args.ref, actor=actor())
        out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return 0


def _gdpr_erase(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as st:
        report = Gdpr(st).erase(args.ref, actor=actor())
    if report.already_erased:
        print(f"{report.ref} was already erased")
    else:
        print(f"{report.ref} erased: {report.keys_shredded} data keys destroyed, "
              f"{report.phones_deleted} phone index rows deleted")
    return 0


def _gdpr_purge(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as st:
        counts = Gdpr(st).purge(actor=actor())
    for name, count in counts.items():
        print(f"{name}: {count} deleted")
    return 0


def _group(sub: Any, name: str, help_text: str) -> Any:
    parser = sub.add_parser(name, help=help_text)
    group = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    group.required = True
    return group


def register(sub: Any) -> None:
    """Add ``db``, ``customers``, ``keys``, ``gdpr`` and ``audit`` to the ``callsec`` CLI."""
    _register_db_and_customers(sub)
    _register_keys_gdpr_audit(sub)


def _register_db_and_customers(sub: Any) -> None:
    db = _group(sub, "db", "database schema")
    p = db.add_parser("upgrade", help="migrate the database to the newest schema")
    p.add_argument("--revision", default="head")
    p.set_defaults(handler=_db_upgrade)

    cu = _group(sub, "customers", "customer records (vCard import/export)")
    p = cu.add_parser("import", help="import a vCard 3.0/4.0 file (re-import updates by UID)")
    p.add_argument("file")
    p.set_defaults(handler=_customers_import)
    p = cu.add_parser("export", help="write a customer as vCard 4.0")
    p.add_argument("ref")
    p.add_argument("-o", "--output")
    p.set_defaults(handler=_customers_export)
    p = cu.add_parser("add", help="add one customer and print its ref")
    p.add_argument("--name", required=True)
    p.add_argument("--given")
    p.add_argument("--family")
    p.add_argument("--mobile", action="append", help="mobile number (receives codes)")
    p.add_argument("--landline", action="append")
    p.add_argument("--email")
    p.add_argument("--lang", choices=("en", "de"))
    p.add_argument("--method", choices=("sms", "email", "totp"), default="sms")
    p.add_argument("--customer-number")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--totp-secret-stdin", action="store_true",
                        help="read the base32 TOTP secret (>= 16 characters) from the first "
                        "line of standard input")
    secret.add_argument("--totp-secret-file", metavar="PATH",
                        help="read the base32 TOTP secret from a file")
    secret.add_argument("--totp-secret", action=_RemovedSecretOption, help=argparse.SUPPRESS)
    p.set_defaults(handler=_customers_add)
    cu.add_parser("list", help="list customer refs").set_defaults(handler=_customers_list)


def _register_keys_gdpr_audit(sub: Any) -> None:
    ke = _group(sub, "keys", "key-encryption keys")
    ke.add_parser("init", help="create the absent keys and record their fingerprints in the "
                  "database (idempotent; never overwrites a key)").set_defaults(handler=_keys_init)
    p = ke.add_parser("rotate", help="add a KEK version and re-wrap every data key")
    p.add_argument("--retire", type=int, metavar="N", help="then destroy KEK version N")
    p.add_argument("--retire-older-than", type=_days, metavar="DAYS",
                   help="then destroy every KEK version created more than DAYS ago (erased "
                   "data in older backups becomes unreadable)")
    p.set_defaults(handler=_keys_rotate)
    p = ke.add_parser("retire", help="re-wrap, then destroy KEK version N")
    p.add_argument("version", type=int)
    p.set_defaults(handler=_keys_retire)
    ke.add_parser("list", help="KEK versions and data keys per version"
                  ).set_defaults(handler=_keys_list)

    gd = _group(sub, "gdpr", "data-subject export, erasure, retention")
    p = gd.add_parser("export", help="everything about a customer as JSON (vCard embedded)")
    p.add_argument("ref")
    p.add_argument("-o", "--output")
    p.set_defaults(handler=_gdpr_export)
    p = gd.add_parser("erase", help="erase a customer (crypto-shredding)")
    p.add_argument("ref")
    p.set_defaults(handler=_gdpr_erase)
    gd.add_parser("purge", help="delete records past [retention]").set_defaults(
        handler=_gdpr_purge)

    audit_cli.register(sub)
