"""Loading the settings: the INI file, environment overrides and ``*_file`` secrets, checked."""

from __future__ import annotations

import configparser
import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from callsec_ari.config.sections import (
    DEFAULT_CONFIG_PATH,
    AriSettings,
    ClusterSettings,
    PolicySettings,
    Secret,
)
from callsec_ari.config.settings import CHOICES, REMOVED, SECTIONS, Settings
from callsec_ari.core.errors import ConfigError

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


def _read_secret_file(path: str, section: str, key: str, base_dir: Path = Path(".")) -> str:
    try:
        return (base_dir / Path(path.strip())).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {key}_file: {exc.strerror}", section=section, key=f"{key}_file"
        ) from None


def _env_key(section: str, key: str) -> str:
    return f"CALLSEC_{section.replace(':', '_').upper()}__{key.upper()}"


def _build(cls: type[_T], section: str, values: Mapping[str, str], env: Mapping[str, str],
           base_dir: Path = Path(".")) -> _T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        base = key[:-5] if key.endswith("_file") else key
        if (section, key) in REMOVED:
            raise ConfigError(REMOVED[(section, key)], section=section, key=key)
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
            raw = _read_secret_file(values[name + "_file"], section, name, base_dir)
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
    _check_crypto(settings)
    _check_methods_and_region(settings)
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
    _check_capture_fields(settings)
    _check_cluster(settings.cluster)
    for name, port in (("agi", settings.agi.port), ("ami", settings.ami.port),
                       ("web", settings.web.port)):
        if not 0 <= port <= 65535:
            raise ConfigError("not a TCP port", section=name, key="port")


def _check_cluster(cluster: ClusterSettings) -> None:
    if not cluster.advertise_url.startswith(("http://", "https://")):
        raise ConfigError("must start with http:// or https://", section="cluster",
                          key="advertise_url")
    if cluster.secret and len(cluster.secret) < 16:
        raise ConfigError("must be at least 16 characters", section="cluster", key="secret")
    if not 0 < cluster.heartbeat_seconds * 2 <= cluster.dead_after_seconds:
        raise ConfigError("must be at least twice heartbeat_seconds (both > 0)",
                          section="cluster", key="dead_after_seconds")


def _check_capture_fields(settings: Settings) -> None:
    capture = settings.capture
    if capture.account_number_min_digits > capture.account_number_max_digits:
        raise ConfigError("must not exceed account_number_max_digits", section="capture",
                          key="account_number_min_digits")


def _check_crypto(settings: Settings) -> None:
    c = settings.crypto
    if c.backend != "pkcs11":
        return
    for key in ("pkcs11_module", "pkcs11_token_label", "pkcs11_pin", "pkcs11_key_prefix"):
        if not getattr(c, key):
            raise ConfigError("is required with backend = pkcs11", section="crypto", key=key)
    if c.kek:
        raise ConfigError("an inline KEK cannot be used with backend = pkcs11 (the KEKs live"
                          " in the token)", section="crypto", key="kek")


#: Verification methods a policy may list (``link`` / ``sms_reply``: answer the sms or email
#: code message without typing, so they need ``sms`` or ``email`` beside them).
METHODS = ("sms", "email", "totp", "link", "sms_reply")


def _check_methods_and_region(settings: Settings) -> None:
    """Known verification methods (at least one per policy); a region phonenumbers knows."""
    import phonenumbers

    for name, policy in settings.policies.items():
        unknown = [m for m in policy.methods if m not in METHODS]
        if unknown or not policy.methods:
            raise ConfigError(f"unknown method(s) {', '.join(unknown) or '(none given)'};"
                              f" known: {', '.join(METHODS)}", section=f"policy:{name}",
                              key="methods")
        if {"link", "sms_reply"} & set(policy.methods) and \
                not {"sms", "email"} & set(policy.methods):
            raise ConfigError("link and sms_reply answer a code message: list sms or email"
                              " too", section=f"policy:{name}", key="methods")
    region = settings.verification.default_region
    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError("not a region phonenumbers knows (ISO 3166 alpha-2, e.g. DE, GB)",
                          section="verification", key="default_region")


def _check_ari_times(ari: AriSettings) -> None:
    for key in ("reconnect_min_seconds", "reconnect_max_seconds", "request_timeout_seconds",
                "app_check_seconds"):
        if not getattr(ari, key) > 0:
            raise ConfigError("must be more than 0", section="ari", key=key)
    if ari.reconnect_min_seconds > ari.reconnect_max_seconds:
        raise ConfigError("must not exceed reconnect_max_seconds", section="ari",
                          key="reconnect_min_seconds")


def resolve_paths(settings: Settings) -> Settings:
    """Relative paths (key ring, outbox, log file, CA files ...) are relative to the
    configuration file's directory, never to the working directory of the process. SQLite
    URLs are resolved the same way when the database is opened (``settings.base_dir``)."""
    changes: dict[str, Any] = {}
    for name in SECTIONS:
        section = getattr(settings, name)
        fixed = {f.name: Path(os.path.normpath(settings.base_dir / value))
                 for f in dataclasses.fields(section)
                 if isinstance(value := getattr(section, f.name), Path)
                 and not value.is_absolute()}
        if fixed:
            changes[name] = dataclasses.replace(section, **fixed)
    return dataclasses.replace(settings, **changes)


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
            removed = REMOVED.get((section, key.lower().removesuffix("_file")))
            if removed is not None:
                raise ConfigError(f"{name} {removed}", section=section, key=key.lower())
            raise ConfigError(f"unknown environment override {name}", section=section,
                              key=key.lower())


def read_settings(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (default: ``config/callsec.conf`` if it exists) into :class:`Settings`,
    checked as far as the configuration itself knows; ``config_check.load_settings`` adds the
    checks the slices own (templates, limits, roles, peers...)."""
    env = os.environ if env is None else env
    parser = configparser.ConfigParser(
        interpolation=None, comment_prefixes=(";", "#"), inline_comment_prefixes=(";",),
        strict=True, default_section="__none__",
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    cfg_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    base_dir = Path.cwd()
    if path is not None or cfg_path.exists():
        base_dir = cfg_path.resolve().parent
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
    prompt_overrides: dict[str, Mapping[str, str]] = {}
    for section in parser.sections():
        values = dict(parser.items(section))
        if section.startswith("prompts:"):
            prompt_overrides[section.split(":", 1)[1]] = types.MappingProxyType(values)
        elif section.startswith("policy:"):
            policies[section.split(":", 1)[1]] = _build(PolicySettings, section, values, env,
                                                        base_dir)
        elif section in SECTIONS:
            kwargs[section] = _build(SECTIONS[section], section, values, env, base_dir)
        else:
            raise ConfigError("unknown section", section=section)
    for section, cls in SECTIONS.items():  # env overrides for sections absent from the file
        if section not in kwargs:
            kwargs[section] = _build(cls, section, {}, env)
    policies.setdefault("default", PolicySettings())
    _check_env(env, policies)
    settings = resolve_paths(Settings(**kwargs, policies=types.MappingProxyType(policies),
                                       prompt_overrides=types.MappingProxyType(prompt_overrides),
                                       base_dir=base_dir))
    _check(settings)
    return settings
