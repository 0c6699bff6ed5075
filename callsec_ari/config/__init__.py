"""Configuration: Asterisk-style INI + environment overrides + ``*_file`` secrets.

The file is read once into frozen, typed settings. Every key of every section is declared
as a dataclass field below; an unknown key, a missing file or a value of the wrong type
raises :class:`ConfigError`, which names the section and the key (``callsec check-config``
prints it and exits 2).

Precedence for ``[section] key``: environment ``CALLSEC_<SECTION>__<KEY>`` > environment
``CALLSEC_<SECTION>__<KEY>_FILE`` > the file's ``key`` > the file's ``key_file`` > default.
Sections named ``policy:<name>`` are verification policies (env: ``CALLSEC_POLICY_<NAME>__<KEY>``).
"""

from callsec_ari.config.loader import read_settings
from callsec_ari.config.sections import (
    DEFAULT_CONFIG_PATH,
    AgiSettings,
    AmiSettings,
    AriSettings,
    CaptureSettings,
    CryptoSettings,
    DatabaseSettings,
    EmailSettings,
    LoggingSettings,
    PolicySettings,
    RetentionSettings,
    Secret,
    SmsSettings,
    VerificationSettings,
    WebSettings,
)
from callsec_ari.config.settings import CHOICES, SECTIONS, Settings

__all__ = [
    "CHOICES", "DEFAULT_CONFIG_PATH", "SECTIONS", "AgiSettings", "AmiSettings", "AriSettings",
    "CaptureSettings", "CryptoSettings", "DatabaseSettings", "EmailSettings", "LoggingSettings",
    "PolicySettings", "RetentionSettings", "Secret", "Settings", "SmsSettings",
    "VerificationSettings", "WebSettings", "read_settings",
]
