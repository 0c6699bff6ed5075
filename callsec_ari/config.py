"""Configuration: Asterisk-style INI + environment overrides + ``*_file`` secrets.

The file is read once into frozen, typed settings. Every key of every section is declared
as a dataclass field below; an unknown key, a missing file or a value of the wrong type
raises :class:`ConfigError`, which names the section and the key (``callsec check-config``
prints it and exits 2).

Precedence for ``[section] key``: environment ``CALLSEC_<SECTION>__<KEY>`` > environment
``CALLSEC_<SECTION>__<KEY>_FILE`` > the file's ``key`` > the file's ``key_file`` > default.
Sections named ``policy:<name>`` are verification policies (env: ``CALLSEC_POLICY_<NAME>__<KEY>``).
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from callsec_ari.core.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/callsec.conf")


class Secret(str):
    """A string that never shows its value in ``repr`` (config dumps, tracebacks)."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


@dataclass(frozen=True, kw_only=True)
class AriSettings:
    """One or more Asterisk servers, reached over ARI (REST + events websocket)."""

    #: Comma-separated base URLs, one per Asterisk server (``http://host:port``).
    urls: tuple[str, ...] = ("http://127.0.0.1:18088",)
    username: str = "callsec"
    password: Secret = Secret("callsec")
    app: str = "callsec"
    reconnect_min_seconds: float = 0.5
    reconnect_max_seconds: float = 30.0
    request_timeout_seconds: float = 5.0
    #: When no event arrived for this long, send the app a user event and expect it back (a
    #: late teardown of an old websocket can remove or deactivate a fresh registration).
    app_check_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class AmiSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 15038
    username: str = "callsec"
    password: Secret = Secret("callsec")


@dataclass(frozen=True, kw_only=True)
class AgiSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 4573


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    #: SQLAlchemy URL; ``sqlite:///var/callsec.db`` (WAL) or ``postgresql+psycopg://...``.
    url: Secret = Secret("sqlite:///var/callsec.db")
    #: Run the migrations on ``callsec run``.
    auto_upgrade: bool = True
    #: SQLite: how long a writer waits for another one's lock.
    busy_timeout_ms: int = 5000
    #: PostgreSQL: connect timeout (an unreachable server fails fast, naming the host).
    connect_timeout_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class CryptoSettings:
    #: Directory of versioned key-encryption keys (``kek-0001.key`` ...), created 0700.
    keyring_dir: Path = Path("var/keys")
    #: Generate a first KEK and blind-index key when none exist (dev default; production
    #: deployments provision keys and set this to no).
    create_missing_keys: bool = True
    #: Optional inline KEK (base64, 32 bytes) used instead of the keyring's newest key.
    kek: Secret = Secret("")
    #: HMAC key for the blind index (base64, 32 bytes); default: ``<keyring_dir>/blind-index.key``.
    blind_index_key: Secret = Secret("")


@dataclass(frozen=True, kw_only=True)
class SmsSettings:
    #: ``outbox`` | ``twilio`` | ``http``
    backend: str = "outbox"
    outbox_dir: Path = Path("var/outbox")
    url: str = ""
    account_sid: str = ""
    auth_token: Secret = Secret("")
    hmac_key: Secret = Secret("")
    sender: str = "CallSec"
    timeout_seconds: float = 2.0
    retries: int = 1
    #: Total time a caller may wait for delivery, retries included.
    budget_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class EmailSettings:
    #: ``outbox`` | ``smtp``
    backend: str = "outbox"
    host: str = "127.0.0.1"
    port: int = 25
    #: ``none`` | ``starttls`` | ``tls``
    security: str = "none"
    username: str = ""
    password: Secret = Secret("")
    sender: str = "callsec@localhost"
    timeout_seconds: float = 3.0
    retries: int = 1
    #: Total time a caller may wait for delivery, retries included.
    budget_seconds: float = 5.0
    #: CA bundle (PEM) trusted for ``starttls`` / ``tls``; empty: the system's.
    ca_file: Path | None = None


@dataclass(frozen=True, kw_only=True)
class VerificationSettings:
    company_name: str = "CallSec Demo"
    default_policy: str = "default"
    code_digits: int = 6
    code_ttl_seconds: int = 600
    max_checks: int = 5
    max_sends: int = 5
    lockout_failures: int = 3
    lockout_window_seconds: int = 3600
    lockout_seconds: int = 900
    caller_rate_limit_per_hour: int = 20
    customer_number_tries: int = 3
    first_digit_timeout_seconds: float = 10.0
    inter_digit_timeout_seconds: float = 5.0
    default_region: str = "DE"
    default_language: str = "en"
    #: Time zone of the call time printed in code messages (IANA name).
    timezone: str = "Europe/Berlin"
    #: Optional overrides of the built-in texts; placeholders ``{company}``, ``{code}``,
    #: ``{time}``, ``{zone}``, ``{ref}``, ``{warning}`` (the warning is appended to an SMS
    #: template that omits it; subjects must not contain ``{code}``).
    sms_template_en: str = ""
    sms_template_de: str = ""
    email_subject_en: str = ""
    email_subject_de: str = ""


@dataclass(frozen=True, kw_only=True)
class PolicySettings:
    #: ``always`` (a code every time) | ``risk`` (only when caller ID or attestation is weak)
    #: | ``never`` (skip; the result is ``skipped``)
    require_code: str = "always"
    #: Connect callers whose verification failed (``connect`` calls only).
    connect_unverified: bool = False
    #: STIR/SHAKEN attestation levels trusted for ``risk`` (e.g. ``A``).
    trusted_attestation: tuple[str, ...] = ("A",)
    #: Allowed methods, in order of preference when the customer has none.
    methods: tuple[str, ...] = ("sms", "email", "totp")


@dataclass(frozen=True, kw_only=True)
class CaptureSettings:
    #: ``bridge`` (caller alone in a capture bridge) | ``talk_through``
    mode: str = "bridge"
    #: ``vault`` | ``gateway``
    sink: str = "vault"
    gateway_url: str = ""
    gateway_hmac_key: Secret = Secret("")
    #: Mutual TLS towards the gateway: client certificate and key (PEM); CA bundle to trust
    #: (empty: the system's). One request per capture, no retries (a payment is not replayed).
    gateway_cert_file: Path | None = None
    gateway_key_file: Path | None = None
    gateway_ca_file: Path | None = None
    gateway_timeout_seconds: float = 10.0
    card_brands: tuple[str, ...] = (
        "visa", "mastercard", "amex", "discover", "diners", "jcb", "maestro", "unionpay",
    )
    iban_country: str = "DE"
    national_id_kind: str = "de_steuer_id"
    max_attempts: int = 3
    confirm_twice: bool = False
    first_digit_timeout_seconds: float = 15.0
    inter_digit_timeout_seconds: float = 6.0
    slow_entry_factor: float = 2.0
    capture_timeout_seconds: float = 180.0
    feature_card: str = "*1"
    feature_bank: str = "*2"
    feature_id: str = "*3"
    agent_hold_class: str = "default"
    #: ``hangup`` | ``continue`` (back to the dialplan) when the agent leaves mid-capture.
    on_agent_hangup: str = "continue"
    #: talk_through: when the media path cannot be set up, ``cancel`` the capture (reason
    #: ``media_failed``) or go on as a ``bridge`` capture.
    talk_through_fallback: str = "cancel"
    #: talk_through: what replaces a 20 ms frame holding key-tone energy: ``silence`` | ``tone``.
    talk_through_replacement: str = "silence"
    #: talk_through: how long a caller frame waits for its successor (the look-ahead) before it
    #: leaves judged alone (any sign of a tone in it: flattened), in ms.
    talk_through_lookahead_ms: float = 25.0
    #: talk_through: the address callsec's relay binds and Asterisk streams to.
    media_host: str = "127.0.0.1"
    #: talk_through: the address Asterisk sends RTP from (empty: ``media_host``).
    media_peer_host: str = ""
    #: talk_through: ``inline`` (the relays run on callsec's own event loop) | ``process`` (in a
    #: dedicated media worker process: a stalled main loop cannot delay a frame; no gain measured
    #: on 2 cores shared with Asterisk, where CPU contention is the limit).
    media_worker: str = "inline"
    #: talk_through: the media worker's nice value (0: inherited; root may set it negative).
    media_nice: int = 0
    #: talk_through, ``media_worker = process``: 1-99 runs the worker under SCHED_RR at this
    #: priority (needs CAP_SYS_NICE), so Asterisk's many busy threads cannot keep a frame
    #: waiting for a CPU; 0 (default): normal scheduling.
    media_realtime_priority: int = 0


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    session_ttl_seconds: int = 28800
    secure_cookies: bool = False
    max_body_bytes: int = 65536
    login_max_failures: int = 5
    login_lockout_seconds: int = 900
    #: Vault kinds a supervisor may reveal (with a fresh TOTP code and a reason); add
    #: ``card_number`` only if card numbers are vaulted and policy allows it. Never ``cvv``.
    reveal_kinds: tuple[str, ...] = ("iban", "national_id")
    #: Optional bearer token for Prometheus scrapers on ``/metrics`` (empty: staff only).
    metrics_token: Secret = Secret("")


@dataclass(frozen=True, kw_only=True)
class RetentionSettings:
    verifications_days: int = 90
    captures_days: int = 90
    audit_days: int = 3650
    unknown_callers_days: int = 30


@dataclass(frozen=True, kw_only=True)
class LoggingSettings:
    level: str = "INFO"
    #: Empty: stderr.
    file: Path | None = None


@dataclass(frozen=True, kw_only=True)
class Settings:
    ari: AriSettings = field(default_factory=AriSettings)
    ami: AmiSettings = field(default_factory=AmiSettings)
    agi: AgiSettings = field(default_factory=AgiSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    crypto: CryptoSettings = field(default_factory=CryptoSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    verification: VerificationSettings = field(default_factory=VerificationSettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    web: WebSettings = field(default_factory=WebSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    policies: Mapping[str, PolicySettings] = field(
        default_factory=lambda: types.MappingProxyType({"default": PolicySettings()})
    )
    #: Directory that relative paths in the file are resolved against (the working dir).
    base_dir: Path = Path(".")

    def policy(self, name: str | None) -> PolicySettings:
        key = name or self.verification.default_policy
        try:
            return self.policies[key]
        except KeyError:
            raise ConfigError(f"unknown policy {key!r}", section=f"policy:{key}") from None


SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if f.name not in ("policies", "base_dir")
}

# Enumerated values checked at load time (section, key) -> allowed.
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("sms", "backend"): ("outbox", "twilio", "http"),
    ("email", "backend"): ("outbox", "smtp"),
    ("email", "security"): ("none", "starttls", "tls"),
    ("capture", "mode"): ("bridge", "talk_through"),
    ("capture", "sink"): ("vault", "gateway"),
    ("capture", "on_agent_hangup"): ("hangup", "continue"),
    ("capture", "talk_through_fallback"): ("cancel", "bridge"),
    ("capture", "talk_through_replacement"): ("silence", "tone"),
    ("capture", "media_worker"): ("inline", "process"),
    ("capture", "national_id_kind"): ("de_steuer_id", "nl_bsn", "us_ssn"),
    ("policy", "require_code"): ("always", "risk", "never"),
    ("verification", "default_language"): ("en", "de"),
    ("logging", "level"): ("DEBUG", "INFO", "WARNING", "ERROR"),
}

_T = TypeVar("_T")
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def _convert(raw: str, typ: Any, section: str, key: str) -> Any:
    raw = raw.strip()
    origin = typing.get_origin(typ)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(typ) if a is not type(None)]
        return None if raw == "" else _convert(raw, inner[0], section, key)
    if origin is tuple:
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if typ is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError("expected yes or no", section=section, key=key)
    if typ in (int, float):
        try:
            return typ(raw)
        except ValueError:
            raise ConfigError(f"expected a {typ.__name__}", section=section, key=key) from None
    if typ is Path:
        return Path(raw)
    if typ is Secret:
        return Secret(raw)
    return raw


def _read_secret_file(path: str, section: str, key: str) -> str:
    try:
        return Path(path.strip()).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {key}_file: {exc.strerror}", section=section, key=f"{key}_file"
        ) from None


def _env_key(section: str, key: str) -> str:
    return f"CALLSEC_{section.replace(':', '_').upper()}__{key.upper()}"


def _build(cls: type[_T], section: str, values: Mapping[str, str], env: Mapping[str, str]) -> _T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        base = key[:-5] if key.endswith("_file") else key
        if key not in names and base not in names:  # ``ca_file`` is a key of its own
            raise ConfigError("unknown key", section=section, key=key)
    kwargs: dict[str, Any] = {}
    kind = section.split(":", 1)[0]
    for name in names:
        raw: str | None = None
        env_name = _env_key(section, name)
        if env_name in env:
            raw = env[env_name]
        elif env_name + "_FILE" in env:
            raw = _read_secret_file(env[env_name + "_FILE"], section, name)
        elif name in values:
            raw = values[name]
        elif name + "_file" in values:
            raw = _read_secret_file(values[name + "_file"], section, name)
        if raw is None:
            continue
        value = _convert(raw, hints[name], section, name)
        allowed = CHOICES.get((kind, name))
        if allowed is not None and value not in allowed:
            raise ConfigError(
                f"must be one of {', '.join(allowed)}", section=section, key=name
            )
        kwargs[name] = value
    return cls(**kwargs)


def _check(settings: Settings) -> None:
    v = settings.verification
    if not 4 <= v.code_digits <= 10:
        raise ConfigError("must be between 4 and 10", section="verification", key="code_digits")
    from callsec_ari.verification.messages import check_message_settings  # no import cycle

    check_message_settings(v)
    from callsec_ari.access.roles import revealable_kinds

    revealable_kinds(settings.web.reveal_kinds)
    if settings.verification.default_policy not in settings.policies:
        raise ConfigError(
            "names no [policy:...] section", section="verification", key="default_policy"
        )
    if not settings.ari.urls:
        raise ConfigError("at least one URL is required", section="ari", key="urls")
    for url in settings.ari.urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError("URLs must start with http:// or https://", section="ari", key="urls")
    _check_ari_times(settings.ari)
    capture = settings.capture
    if not 5.0 <= capture.talk_through_lookahead_ms <= 60.0:
        raise ConfigError("must be between 5 and 60 (ms)", section="capture",
                          key="talk_through_lookahead_ms")
    if not 0 <= capture.media_realtime_priority <= 99:
        raise ConfigError("must be between 0 and 99", section="capture",
                          key="media_realtime_priority")
    if capture.media_realtime_priority and capture.media_worker != "process":
        raise ConfigError("needs media_worker = process (callsec's own loop never runs"
                          " realtime)", section="capture", key="media_realtime_priority")
    for name, port in (("agi", settings.agi.port), ("ami", settings.ami.port),
                       ("web", settings.web.port)):
        if not 0 <= port <= 65535:
            raise ConfigError("not a TCP port", section=name, key="port")


def _check_ari_times(ari: AriSettings) -> None:
    for key in ("reconnect_min_seconds", "reconnect_max_seconds", "request_timeout_seconds",
                "app_check_seconds"):
        if not getattr(ari, key) > 0:
            raise ConfigError("must be more than 0", section="ari", key=key)
    if ari.reconnect_min_seconds > ari.reconnect_max_seconds:
        raise ConfigError("must not exceed reconnect_max_seconds", section="ari",
                          key="reconnect_min_seconds")


def _check_env(env: Mapping[str, str], policies: Mapping[str, PolicySettings]) -> None:
    """A ``CALLSEC_<SECTION>__<KEY>`` that names no key is a typo: refuse it, never ignore it."""
    known: set[str] = set()
    targets = [(name, cls) for name, cls in SECTIONS.items()]
    targets += [(f"policy:{name}", PolicySettings) for name in policies]
    for section, cls in targets:
        for f in dataclasses.fields(cls):
            known.update((_env_key(section, f.name), _env_key(section, f.name) + "_FILE"))
    for name in sorted(env):
        prefix, sep, key = name.partition("__")
        if sep and name.startswith("CALLSEC_") and name not in known:
            section = prefix[len("CALLSEC_"):].lower()
            if section.startswith("policy_"):
                section = "policy:" + section[len("policy_"):]
            raise ConfigError(f"unknown environment override {name}", section=section,
                              key=key.lower())


def load_settings(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (default: ``config/callsec.conf`` if it exists) into :class:`Settings`."""
    env = os.environ if env is None else env
    parser = configparser.ConfigParser(
        interpolation=None, comment_prefixes=(";", "#"), inline_comment_prefixes=(";",),
        strict=True, default_section="__none__",
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    cfg_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if path is not None or cfg_path.exists():
        try:
            with cfg_path.open(encoding="utf-8") as fh:
                parser.read_file(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read {cfg_path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{cfg_path}: not UTF-8 text (byte {exc.start})") from None
        except configparser.DuplicateOptionError as exc:
            raise ConfigError(f"{cfg_path} line {exc.lineno}: the key is set twice",
                              section=exc.section, key=exc.option) from None
        except configparser.DuplicateSectionError as exc:
            raise ConfigError(f"{cfg_path} line {exc.lineno}: the section appears twice",
                              section=exc.section) from None
        except configparser.Error as exc:
            raise ConfigError(f"{cfg_path}: {exc.message}") from None
    kwargs: dict[str, Any] = {}
    policies: dict[str, PolicySettings] = {}
    for section in parser.sections():
        values = dict(parser.items(section))
        if section.startswith("policy:"):
            policies[section.split(":", 1)[1]] = _build(PolicySettings, section, values, env)
        elif section in SECTIONS:
            kwargs[section] = _build(SECTIONS[section], section, values, env)
        else:
            raise ConfigError("unknown section", section=section)
    for section, cls in SECTIONS.items():  # env overrides for sections absent from the file
        if section not in kwargs:
            kwargs[section] = _build(cls, section, {}, env)
    policies.setdefault("default", PolicySettings())
    _check_env(env, policies)
    settings = Settings(**kwargs, policies=types.MappingProxyType(policies))
    _check(settings)
    return settings
