"""``[webhooks]``: the URLs, their secrets and the retry limits, checked at load time."""

from __future__ import annotations

from callsec_ari.config.sections import WebhookSettings
from callsec_ari.core.errors import ConfigError
from callsec_ari.verification.delivery.retry import RetryPolicy
from callsec_ari.webhooks.sender import Target

#: A secret shorter than this is refused (HMAC keys: at least 128 bits of text).
MIN_SECRET_CHARS = 16


def _secrets(w: WebhookSettings) -> list[str]:
    per_url = [s.strip() for s in str(w.secrets).replace("\n", ",").split(",") if s.strip()]
    if per_url:
        return per_url
    return [str(w.secret)] * len(w.urls)


def targets_from(w: WebhookSettings) -> list[Target]:
    return [Target(url, secret.encode()) for url, secret in zip(w.urls, _secrets(w),
                                                                  strict=True)]


def policy_from(w: WebhookSettings) -> RetryPolicy:
    return RetryPolicy(timeout_seconds=w.timeout_seconds, retries=w.max_attempts - 1,
                       budget_seconds=w.max_seconds, backoff_seconds=w.backoff_seconds,
                       max_backoff_seconds=w.max_backoff_seconds, jitter=0.5)


def check_webhook_settings(w: WebhookSettings) -> None:
    for url in w.urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError("URLs must start with http:// or https://", section="webhooks",
                              key="urls")
    if not w.urls:
        return
    secrets = _secrets(w)
    if len(secrets) != len(w.urls):
        raise ConfigError(f"names {len(secrets)} secret(s) for {len(w.urls)} URL(s): one per"
                          " URL, in the same order", section="webhooks", key="secrets")
    if any(len(s) < MIN_SECRET_CHARS for s in secrets):
        raise ConfigError(f"every URL needs a secret of at least {MIN_SECRET_CHARS} characters"
                          " (secret, secret_file, secrets or secrets_file)",
                          section="webhooks", key="secret")
    if w.max_attempts < 1 or w.queue_size < 1:
        raise ConfigError("max_attempts and queue_size must be at least 1",
                          section="webhooks", key="max_attempts")
    if w.backoff_seconds < 0 or w.max_backoff_seconds < w.backoff_seconds:
        raise ConfigError("backoff_seconds must be >= 0 and at most max_backoff_seconds",
                          section="webhooks", key="max_backoff_seconds")
    if w.timeout_seconds <= 0 or w.max_seconds < w.timeout_seconds:
        raise ConfigError("timeout_seconds must be > 0 and at most max_seconds",
                          section="webhooks", key="timeout_seconds")
