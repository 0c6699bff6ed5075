"""Signed webhooks: masked call events POSTed to the integrator's URLs (``[webhooks]``).

Other slices depend only on :class:`~callsec_ari.webhooks.port.WebhookNotifier` (``emit``); the
application builds the real one (:class:`~callsec_ari.webhooks.service.WebhookService`) or a
:class:`~callsec_ari.webhooks.port.NullNotifier` when no URL is configured.
"""

from callsec_ari.webhooks.port import EVENT_TYPES, NullNotifier, WebhookNotifier

__all__ = ["EVENT_TYPES", "NullNotifier", "WebhookNotifier"]
