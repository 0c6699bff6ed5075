"""The settings as a whole: the sections composed, and the tables the loader checks them by."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callsec_ari.config.sections import (
    AgiSettings,
    AmiSettings,
    ApprovalSettings,
    AriSettings,
    CaptureSettings,
    ClusterSettings,
    CryptoSettings,
    DatabaseSettings,
    EmailSettings,
    LoggingSettings,
    PolicySettings,
    PromptsSettings,
    RetentionSettings,
    SmsSettings,
    StatusSettings,
    VerificationSettings,
    WebhookSettings,
    WebSettings,
)
from callsec_ari.core.errors import ConfigError


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
    approval: ApprovalSettings = field(default_factory=ApprovalSettings)
    web: WebSettings = field(default_factory=WebSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    prompts: PromptsSettings = field(default_factory=PromptsSettings)
    #: ``[prompts:<lang>]`` sections: ``{lang: {prompt name: sound}}``.
    prompt_overrides: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: types.MappingProxyType({}))
    policies: Mapping[str, PolicySettings] = field(
        default_factory=lambda: types.MappingProxyType({"default": PolicySettings()})
    )
    #: Directory that relative paths are resolved against: the configuration file's
    #: directory (the working directory only when no file is read).
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
    if f.name not in ("policies", "base_dir", "prompt_overrides")
}

# Keys that were removed: (section, key) -> what to do instead (a clear error, not "unknown").
REMOVED: dict[tuple[str, str], str] = {
    ("crypto", "create_missing_keys"): "was removed: keys are no longer created automatically;"
    " delete this line and create the keys once with `callsec keys init`",
}

# Enumerated values checked at load time (section, key) -> allowed.
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("crypto", "backend"): ("file", "pkcs11"),
    ("sms", "backend"): ("outbox", "twilio", "http"),
    ("email", "backend"): ("outbox", "smtp"),
    ("email", "security"): ("none", "starttls", "tls"),
    ("capture", "mode"): ("bridge", "talk_through"),
    ("capture", "sink"): ("vault", "gateway", "sealed"),
    ("capture", "on_agent_hangup"): ("hangup", "continue"),
    ("capture", "talk_through_fallback"): ("cancel", "bridge"),
    ("capture", "talk_through_replacement"): ("silence", "tone"),
    ("capture", "media_worker"): ("inline", "process"),
    ("capture", "national_id_kind"): ("de_steuer_id", "nl_bsn", "us_ssn"),
    ("capture", "postal_code_format"): ("us", "de", "at", "ch", "fr", "es", "it"),
    ("policy", "require_code"): ("always", "risk", "never"),
    ("verification", "default_language"): ("en", "de"),
    ("logging", "level"): ("DEBUG", "INFO", "WARNING", "ERROR"),
    ("logging", "format"): ("text", "json"),
}
