"""``callsec check-config``: every validator the commands run, pulled forward.

Loading the settings already checks types, choices and ranges (:mod:`callsec_ari.config`).
The commands validate more when they build their parts: the database URL when the store opens,
the inline keys when the key ring is made, the delivery backends' credentials, the ARI client's
URLs and user, the payment gateway's URL and TLS files. This module builds those same parts
(without connecting anywhere) so that a value any command would reject is reported here first,
as a :class:`ConfigError` naming the section and the key (exit 2).

With ``connect`` it also opens the store exactly as the commands do (database reachable, a
SQLite file that exists, the schema at the newest migration, the key ring present and matching
the fingerprints the database recorded; a PKCS#11 token logged in). Without it nothing is
connected and nothing is created, so ``check-config`` works on a new machine before
``db upgrade`` and ``keys init``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from callsec_ari.access.roles import revealable_kinds
from callsec_ari.access.throttle import check_login_settings
from callsec_ari.agi.trust import check_allowed_peers
from callsec_ari.approval.messages import check_approval_settings
from callsec_ari.capture.formats import ACCOUNT_DIGITS_RANGE
from callsec_ari.config import Settings, read_settings
from callsec_ari.core.errors import ConfigError
from callsec_ari.runtime.prompts import check_overrides
from callsec_ari.store.errors import KeyUnavailable
from callsec_ari.verification.confirm_links import check_public_url
from callsec_ari.verification.limits import check_limit_settings
from callsec_ari.verification.messages import check_message_settings
from callsec_ari.web.clientaddr import trusted_networks
from callsec_ari.webhooks.config import check_webhook_settings


def load_settings(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The settings every command runs on: :func:`~callsec_ari.config.read_settings` plus the
    checks the slices own (config/ knows no slice), each a ``ConfigError`` naming its key."""
    settings = read_settings(path, env)
    check_message_settings(settings.verification)
    check_limit_settings(settings.verification)
    check_approval_settings(settings.approval)
    revealable_kinds(settings.web.reveal_kinds)
    check_login_settings(settings.web)
    trusted_networks(settings.web.trusted_proxies)
    check_allowed_peers(settings.agi.allowed_peers)
    check_webhook_settings(settings.webhooks)
    check_public_url(settings)
    (low, high), capture = ACCOUNT_DIGITS_RANGE, settings.capture
    for key in ("account_number_min_digits", "account_number_max_digits"):
        if not low <= getattr(capture, key) <= high:
            raise ConfigError(f"must be between {low} and {high}", section="capture", key=key)
    check_overrides(settings.prompt_overrides)
    return settings


def check_database_url(raw: str) -> None:
    """A URL SQLAlchemy parses, of a supported dialect whose driver is installed."""
    try:
        url = make_url(raw)
        url.get_dialect()  # loads the driver: ``sqlite+nosuch://`` fails here
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise ConfigError("not a usable database URL (sqlite:///PATH or "
                          "postgresql+psycopg://USER@HOST/DB)", section="database",
                          key="url") from None
    except ImportError:
        raise ConfigError("the database driver is not installed", section="database",
                          key="url") from None
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "postgresql" and driver != "psycopg":
        raise ConfigError("use postgresql+psycopg://", section="database", key="url")
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError("only sqlite and postgresql+psycopg URLs are supported",
                          section="database", key="url")


def check_keys(settings: Settings) -> None:
    """Inline keys decode to 32 bytes; the PKCS#11 backend's library and module exist."""
    from callsec_ari.store.crypto import Keyring

    c = settings.crypto
    for key, kwargs in (("kek", {"inline_kek": str(c.kek)}),
                        ("blind_index_key", {"blind_index_key": str(c.blind_index_key)})):
        try:
            Keyring(c.keyring_dir, **kwargs)
        except KeyUnavailable:
            raise ConfigError("not a base64-encoded 32-byte key", section="crypto",
                              key=key) from None
    if c.backend == "pkcs11":
        import callsec_ari.store.pkcs11  # noqa: F401  (needs the hsm extra: ConfigError if not)

        if c.pkcs11_module is None or not c.pkcs11_module.is_file():
            raise ConfigError(f"{c.pkcs11_module} does not exist", section="crypto",
                              key="pkcs11_module")


def check_deliveries(settings: Settings) -> None:
    """The SMS and e-mail backends as ``callsec run`` builds them (credentials present)."""
    import logging

    from callsec_ari.verification.delivery.factory import build_deliveries

    factory_log = logging.getLogger("callsec_ari.verification.delivery.factory")
    level = factory_log.level
    factory_log.setLevel(logging.ERROR)  # its outbox warning is for `run`, not for a check
    try:
        build_deliveries(settings)
    finally:
        factory_log.setLevel(level)


def check_ari(settings: Settings) -> None:
    """Every ARI URL, the app name and the user as the ARI client takes them."""
    from callsec_ari.ari.client import AriClient

    ari = settings.ari
    for url in ari.urls:
        try:
            AriClient(url, ari.username, ari.password, [ari.app],
                      request_timeout=ari.request_timeout_seconds,
                      reconnect_min=ari.reconnect_min_seconds,
                      reconnect_max=ari.reconnect_max_seconds, app_check=ari.app_check_seconds)
        except ValueError:  # yarl: not a URL at all
            raise ConfigError("not a URL", section="ari", key="urls") from None


def check_capture(settings: Settings) -> None:
    """The payment gateway (URL, authentication, TLS files), the sealed sink's key and the
    IBAN country."""
    from callsec_ari.capture.fields import IBAN_DIGITS

    capture = settings.capture
    if capture.iban_country.upper() not in IBAN_DIGITS:
        raise ConfigError(f"no IBAN rules for this country (known: {', '.join(IBAN_DIGITS)})",
                          section="capture", key="iban_country")
    if capture.sink == "gateway":
        from callsec_ari.capture.sinks import check_gateway_settings, gateway_ssl_context

        check_gateway_settings(capture)
        gateway_ssl_context(capture)
    if capture.sink == "sealed":
        from callsec_ari.capture.sealed import load_sealing_key

        load_sealing_key(capture.sealed_public_key)


def check_store(settings: Settings) -> None:
    """``--connect``: open the store as every command does, then close it."""
    from callsec_ari.store.context import open_store

    open_store(settings, upgrade=False).close()


def check_everything(settings: Settings, *, connect: bool = False) -> None:
    """Raise the first :class:`ConfigError` any command would raise for these settings."""
    check_database_url(str(settings.database.url))
    check_keys(settings)
    check_deliveries(settings)
    check_ari(settings)
    check_capture(settings)
    if connect:
        check_store(settings)
