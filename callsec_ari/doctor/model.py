"""What ``callsec doctor`` knows about one Asterisk (:class:`Facts`) and what it reports
(:class:`Finding`). Pure data: gathering is :mod:`callsec_ari.doctor.gather`, judging is
:mod:`callsec_ari.doctor.checks`.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from callsec_ari.ami.manager import ConfigCategory
from callsec_ari.config import Settings

_TRUE = {"1", "yes", "true", "on", "y", "t"}


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    """One place where digits could leak. ``id`` is stable (scripts match on it)."""

    id: str
    severity: Severity
    what: str
    where: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "severity": self.severity.label, "what": self.what,
                "where": self.where, "fix": self.fix}


@dataclass(frozen=True)
class LogChannel:
    """A logger channel: ``name`` (file path, ``console``, ``syslog.local0``), its ``kind``
    (``file``, ``console``, ``syslog``) and its levels, lower case (``*`` expanded)."""

    name: str
    kind: str
    levels: frozenset[str]


#: Config files doctor reads over AMI ``GetConfig``.
CONFIG_FILES = ("manager.conf", "http.conf", "ari.conf", "cel.conf", "logger.conf",
                "asterisk.conf", "pjsip.conf", "pjsip_wizard.conf")


@dataclass
class Facts:
    """Everything the checks look at. ``None`` means "could not be found out"."""

    settings: Settings
    ari_url: str
    ari_error: str | None = None
    ami_error: str | None = None
    #: GetConfig refused (the AMI user lacks write class ``system``/``config``).
    config_error: str | None = None
    #: PJSIP endpoint name -> effective options (ARI dynamic config, else pjsip.conf).
    endpoints: dict[str, dict[str, str]] | None = None
    #: Endpoint names that are trunks (identify / registration / wizard remote_hosts).
    trunks: set[str] | None = None
    log_channels: list[LogChannel] | None = None
    #: Loaded modules without ``.so`` (``app_mixmonitor``).
    modules: set[str] | None = None
    #: file name -> categories; a file Asterisk does not have maps to an empty list.
    configs: dict[str, list[ConfigCategory]] = field(default_factory=dict)
    #: ``MixMonitorMute`` allowed for callsec's AMI user (None: unknown).
    can_mute: bool | None = None
    #: Names of DTMF events callsec's own AMI connection received while doctor ran.
    observed_events: list[str] = field(default_factory=list)

    def config(self, filename: str) -> list[ConfigCategory] | None:
        return self.configs.get(filename)

    def section(self, filename: str, name: str) -> ConfigCategory | None:
        for category in self.configs.get(filename) or []:
            if category.name == name:
                return category
        return None


def is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def is_loopback(host: str | None) -> bool:
    """``127.0.0.1``, ``::1``, ``[::1]``, ``localhost``; a port suffix is ignored."""
    if not host:
        return False
    host = host.strip()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def names(items: list[str], limit: int = 8) -> str:
    """``a, b, c`` or ``a, b, ... and 12 more``."""
    shown = ", ".join(sorted(items)[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def parse_levels(spec: str) -> frozenset[str]:
    """logger.conf levels (``[json]notice,warning,dtmf``; ``*`` is every level)."""
    spec = spec.strip()
    if spec.startswith("["):
        spec = spec.split("]", 1)[-1]
    levels = {part.strip().lower() for part in spec.split(",") if part.strip()}
    if "*" in levels:
        levels |= {"debug", "trace", "notice", "warning", "error", "verbose", "dtmf", "fax",
                   "security"}
    return frozenset(levels)


def options(items: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in items.items()}
