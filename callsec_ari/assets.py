"""``callsec install-assets``: the packaged prompts, dialplan, unit and sample config, copied
where Asterisk, systemd and the operator look for them.

The files come from the installed package (``callsec_ari/data/``, written by setup.py's build
hook into the wheel), read with importlib.resources, so the command works from a wheel installed
anywhere. A source checkout has no ``data/`` (``tools/make_sounds.sh --install`` serves it).

- prompts: ``SOUNDS/<lang>/callsec/<name>.{ulaw,alaw,g722,sln16}`` (every language packaged);
  German digits into ``SOUNDS/de/digits`` unless that Asterisk has digits of its own there
  (``asterisk-core-sounds-de``): ours carry a ``.callsec`` marker and are refreshed;
- dialplan: ``DIALPLAN/extensions_callsec.conf`` (product file, replaced);
- systemd unit: ``SYSTEMD/callsec.service`` (product file, replaced; local changes belong in a
  drop-in, ``systemctl edit callsec``);
- sample config: ``CONFIG/callsec.conf`` when there is none, else ``CONFIG/callsec.conf.sample``
  beside it: an existing configuration is never overwritten.

Running it twice leaves the same files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from callsec_ari.core.errors import CallsecError, ErrorId

#: The formats setup.py converts every prompt into (Asterisk plays them without transcoding).
PROMPT_FORMATS = ("ulaw", "alaw", "g722", "sln16")
DIGITS_MARKER = ".callsec"


class AssetsMissing(CallsecError):
    """This installation has no packaged assets (a source checkout, not a built wheel)."""

    error_id = ErrorId.ASSETS_MISSING


class AssetTargetInvalid(CallsecError):
    """A target directory named on the command line does not exist."""

    error_id = ErrorId.ASSET_TARGET_INVALID


def data_root() -> Traversable:
    root = files("callsec_ari") / "data"
    if not (root / "sounds").is_dir():
        raise AssetsMissing(
            "this callsec has no packaged assets (callsec_ari/data): install the built wheel"
            " (python -m build), or from a source checkout use tools/make_sounds.sh --install")
    return root


def _directory(path: str, option: str) -> Path:
    target = Path(path)
    if not target.is_dir():
        raise AssetTargetInvalid(f"{option} {path}: not a directory")
    return target


def _copy(source: Traversable, dest: Path, mode: int = 0o644) -> None:
    """Replace ``dest`` atomically with ``source`` (a reader never sees half a file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with as_file(source) as real:
        shutil.copyfile(real, tmp)
    os.chmod(tmp, mode)
    os.replace(tmp, dest)


def _copy_tree(source: Traversable, dest: Path) -> int:
    count = 0
    for item in sorted(source.iterdir(), key=lambda t: t.name):
        if item.is_file() and item.name.rsplit(".", 1)[-1] in PROMPT_FORMATS:
            _copy(item, dest / item.name)
            count += 1
    return count


def _own_digits(digits: Path) -> bool:
    """Digits we may write: none there yet, or ours (marked)."""
    return (digits / DIGITS_MARKER).is_file() or not any(digits.glob("0.*"))


@dataclass
class Report:
    lines: list[str]

    def say(self, line: str) -> None:
        self.lines.append(line)


def install_sounds(root: Traversable, sounds_dir: Path, report: Report) -> None:
    for lang in sorted((d for d in (root / "sounds").iterdir() if d.is_dir()),
                       key=lambda t: t.name):
        prompts = lang / "callsec"
        if prompts.is_dir():
            target = sounds_dir / lang.name / "callsec"
            count = _copy_tree(prompts, target)
            report.say(f"installed {count} prompt files ({lang.name}) into {target}")
        digits_src = lang / "digits"
        if digits_src.is_dir():
            digits = sounds_dir / lang.name / "digits"
            if digits.is_dir() and not _own_digits(digits):
                report.say(f"kept the digits already in {digits}")
                continue
            count = _copy_tree(digits_src, digits)
            (digits / DIGITS_MARKER).write_text("installed by callsec install-assets\n")
            report.say(f"installed {count} digit files ({lang.name}) into {digits}")


def install_config(root: Traversable, config_dir: Path, report: Report) -> None:
    sample = root / "config" / "callsec.conf.sample"
    conf = config_dir / "callsec.conf"
    if conf.exists():
        _copy(sample, config_dir / "callsec.conf.sample", 0o640)
        report.say(f"kept {conf}; the current sample is {config_dir / 'callsec.conf.sample'}")
    else:
        _copy(sample, conf, 0o640)
        report.say(f"wrote {conf} from the sample: edit it, then run callsec check-config")


def install(args: argparse.Namespace) -> Report:
    sounds = _directory(args.sounds_dir, "--sounds-dir")
    dialplan = _directory(args.dialplan_dir, "--dialplan-dir")
    systemd = _directory(args.systemd_dir, "--systemd-dir") if args.systemd_dir else None
    config = _directory(args.config_dir, "--config-dir") if args.config_dir else None
    root = data_root()
    report = Report([])
    install_sounds(root, sounds, report)
    for item in sorted((root / "dialplan").iterdir(), key=lambda t: t.name):
        if item.name.endswith(".conf"):
            _copy(item, dialplan / item.name)
            report.say(f"installed {dialplan / item.name}")
    if systemd is not None:
        _copy(root / "systemd" / "callsec.service", systemd / "callsec.service")
        report.say(f"installed {systemd / 'callsec.service'} (then: systemctl daemon-reload)")
    if config is not None:
        install_config(root, config, report)
    return report


def _cmd_install_assets(args: argparse.Namespace, _settings: object) -> int:
    try:
        report = install(args)
    except AssetTargetInvalid as exc:
        print(f"callsec: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"callsec: install-assets: {exc.strerror or type(exc).__name__}: "
              f"{exc.filename or ''}", file=sys.stderr)
        return 1
    for line in report.lines:
        print(line)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "install-assets", help="copy the packaged prompts, dialplan, systemd unit and sample"
        " config into the directories Asterisk, systemd and callsec read (no config needed)")
    p.add_argument("--sounds-dir", required=True, metavar="DIR",
                   help="Asterisk's sounds directory, e.g. /usr/share/asterisk/sounds")
    p.add_argument("--dialplan-dir", required=True, metavar="DIR",
                   help="where extensions.conf lives, e.g. /etc/asterisk")
    p.add_argument("--systemd-dir", metavar="DIR", help="e.g. /etc/systemd/system")
    p.add_argument("--config-dir", metavar="DIR",
                   help="e.g. /etc/callsec (an existing callsec.conf is kept)")
    p.set_defaults(handler=_cmd_install_assets, needs_config=False)
