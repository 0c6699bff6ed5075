"""Which flow a ``Stasis(callsec,<name>,...)`` line or an ``agi://.../<name>`` request starts,
built from the settings. The same registry serves the ARI and the FastAGI adapters."""

from __future__ import annotations

from collections.abc import Callable

from callsec_ari.config import PolicySettings, Settings
from callsec_ari.connect.flow import ConnectFlow, ConnectOptions
from callsec_ari.core.errors import ConfigError
from callsec_ari.core.events import CallStarted
from callsec_ari.core.flow import Flow
from callsec_ari.probe.flow import ProbeFlow
from callsec_ari.verification.flow import VerificationFlow, VerificationOptions

FlowFactory = Callable[[str, CallStarted], Flow]


def verification_options(settings: Settings, policy: PolicySettings, *,
                         continue_after: bool) -> VerificationOptions:
    v = settings.verification
    return VerificationOptions(
        require_code=policy.require_code, trusted_attestation=policy.trusted_attestation,
        methods=policy.methods, code_digits=v.code_digits, code_ttl=float(v.code_ttl_seconds),
        max_checks=v.max_checks, max_sends=v.max_sends,
        customer_number_tries=v.customer_number_tries,
        first_digit_timeout=v.first_digit_timeout_seconds,
        inter_digit_timeout=v.inter_digit_timeout_seconds, continue_after=continue_after)


class FlowRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _policy(self, started: CallStarted) -> PolicySettings:
        try:
            return self.settings.policy(started.option("policy") or None)
        except ConfigError:
            # An unknown policy name in the dialplan must not open the door: use the default.
            return self.settings.policy(None)

    def verify(self, call_id: str, started: CallStarted) -> Flow:
        options = verification_options(self.settings, self._policy(started), continue_after=True)
        return VerificationFlow(call_id, options)

    def connect(self, call_id: str, started: CallStarted) -> Flow:
        policy = self._policy(started)
        options = verification_options(self.settings, policy, continue_after=False)
        dial = started.args[0] if started.args else started.option("dial")
        return ConnectFlow(call_id, VerificationFlow(call_id, options), ConnectOptions(
            dial_string=dial, connect_unverified=policy.connect_unverified,
            on_agent_hangup=self.settings.capture.on_agent_hangup))

    @staticmethod
    def probe(call_id: str, started: CallStarted) -> Flow:
        return ProbeFlow(call_id)

    def as_mapping(self) -> dict[str, FlowFactory]:
        return {"verify": self.verify, "connect": self.connect, "probe": self.probe}
