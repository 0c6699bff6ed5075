"""The connect call's capture slot: one caller-side entry at a time (a capture in bridge or
talk-through mode, or a payment approval), hosted while the call is CONNECTED.

The connect flow hands the slot its events and sends the commands it returns; the slot never
changes the call's state. A capture (``capture/steering.py``, ``capture/talkthrough.py``) or an
approval (``approval/flow.py``) is driven through the public face of its route,
:class:`~callsec_ari.capture.steering.CaptureSteering`: ``start``, ``handle``, ``cancel``,
``abandon``, ``reopen``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from callsec_ari.approval import flow as af
from callsec_ari.capture import protocol as cp
from callsec_ari.capture.entry import EntryOptions, FieldEntry
from callsec_ari.capture.fields import ValidationContext
from callsec_ari.capture.steering import CaptureSteering, SteeringOptions
from callsec_ari.capture.talkthrough import steer
from callsec_ari.connect.recovery import capture_bridge
from callsec_ari.core import commands as c
from callsec_ari.core.errors import ErrorId
from callsec_ari.core.events import CommandFailed, DtmfReceived, Event

AGENT = "agent"
#: Commands whose failure into an outage left the caller where a reconnect must fix it.
_SETTLING = (c.RemoveFromBridge, c.AddToBridge, c.DestroyBridge)


@dataclass(frozen=True, kw_only=True)
class CaptureOptions:
    context: ValidationContext
    entry: EntryOptions
    capture_timeout: float = 180.0
    #: Agent keypad feature codes (``*1``) -> field set name in ``FIELD_SETS``.
    feature_codes: tuple[tuple[str, str], ...] = (("*1", "card"), ("*2", "bank"), ("*3", "id"))
    #: Makes capture ids for captures the agent starts from the keypad.
    new_id: Callable[[], str] = lambda: "CP-local"
    #: ``bridge`` | ``talk_through`` (``capture/talkthrough.py``), unless the request names one.
    mode: str = "bridge"
    #: A talk-through capture whose media cannot be set up goes on as a bridge capture.
    fallback_to_bridge: bool = False


class CaptureSlot:
    def __init__(self, call_id: str, agent_bridge: str, captures: CaptureOptions | None,
                 approvals: af.ApprovalOptions | None) -> None:
        self.agent_bridge = agent_bridge
        self.capture_bridge = capture_bridge(call_id)
        self.captures = captures
        self.approvals = approvals
        self.route: CaptureSteering | None = None
        self._agent_keys = ""
        self._agent_key_at = 0.0
        self._unsettled = False  # a give-back failed: Asterisk was out of reach

    def active(self, capture_id: str | None = None) -> CaptureSteering | None:
        route = self.route
        if route is None or route.done:
            return None
        if capture_id is not None and route.capture_id != capture_id:
            return None
        return route

    def _options(self, customer_ref: str, language: str, timeout: float) -> SteeringOptions:
        return SteeringOptions(agent_bridge=self.agent_bridge,
                               capture_bridge=self.capture_bridge, customer_ref=customer_ref,
                               capture_timeout=timeout, language=language)

    def request(self, event: cp.CaptureRequested, customer_ref: str,
                language: str) -> list[c.Command]:
        captures = self.captures
        if captures is None or self.active() is not None:
            reason = "busy" if captures is not None else "not_offered"
            return [c.Publish(topic="capture", payload=(
                ("capture_id", event.capture_id), ("stage", "rejected"), ("reason", reason)))]
        entry = FieldEntry(event.capture_id, event.fields, captures.context,
                           replace(captures.entry, language=language), event.optional)
        options = self._options(customer_ref, language, captures.capture_timeout)
        self.route = steer(event, entry, options, mode=event.mode or captures.mode,
                           fallback=captures.fallback_to_bridge)
        return self.route.start()

    def approval(self, event: af.ApprovalRequested, customer_ref: str,
                 language: str) -> list[c.Command]:
        """A payment approval (``approval/flow.py``) takes the capture slot."""
        captures, approvals = self.captures, self.approvals
        if captures is None or approvals is None or self.active() is not None:
            return [af.FinishApproval(approval_id=event.approval_id, result="failed",
                                      reason="busy")]
        options = self._options(customer_ref, language, approvals.entry_timeout)
        self.route = af.ApprovalSteering(event, captures.context, options, approvals)
        return self.route.start()

    def handle(self, event: Event, capture_id: str | None = None) -> list[c.Command]:
        """An event for the running entry (``capture_id``: only if it is that one)."""
        route = self.active(capture_id)
        return self._drive(route, event) if route is not None else []

    def _drive(self, route: CaptureSteering, event: Event) -> list[c.Command]:
        commands = route.handle(event)
        self.route = route.successor or route  # a talk-through capture fell back to bridge
        return commands

    def digit(self, event: DtmfReceived, customer_ref: str, language: str) -> list[c.Command]:
        if event.leg == AGENT and self.active() is None:
            return self._feature_code(event, customer_ref, language)
        return self.handle(event)

    def _feature_code(self, event: DtmfReceived, customer_ref: str,
                      language: str) -> list[c.Command]:
        captures = self.captures
        if captures is None:
            return []
        if event.at - self._agent_key_at > 3.0:
            self._agent_keys = ""
        self._agent_keys = (self._agent_keys + event.digit)[-3:]
        self._agent_key_at = event.at
        for code, field_set in captures.feature_codes:
            if self._agent_keys.endswith(code):
                self._agent_keys = ""
                return self.request(cp.CaptureRequested(
                    capture_id=captures.new_id(), fields=cp.FIELD_SETS[field_set],
                    requested_by="agent-keypad", at=event.at), customer_ref, language)
        return []

    def control(self, event: cp.FieldControl, customer_ref: str,
                language: str) -> list[c.Command]:
        if self.active(event.capture_id) is not None:
            return self.handle(event)
        done = self.route  # a re-request re-opens the just-finished capture for the field
        reopen = done.reopen(event) if done is not None and done.capture_id == \
            event.capture_id and self.active() is None else None
        return self.request(reopen, customer_ref, language) if reopen is not None else []

    def cancel(self, reason: str) -> list[c.Command]:
        route = self.active()
        return route.cancel(reason) if route is not None else []

    def abandon(self, result: str, reason: str) -> list[c.Command]:
        """A leg left: the entry ends where it is (nothing typed is kept)."""
        route = self.active()
        if route is None:
            return []
        self.route = None
        return route.abandon(result, reason)

    def failed(self, event: CommandFailed) -> list[c.Command]:
        route = self.active()
        if route is not None:
            return self._drive(route, event)
        if event.error_id == ErrorId.ARI_UNAVAILABLE and self.route is not None and (
                issubclass(event.command, _SETTLING)
                or (event.command is c.HangupLeg and self.route.media_legs)):
            self._unsettled = True  # redone by the reconnect's Resynchronised
        return []

    def unsettled(self) -> tuple[str, ...] | None:
        """After a reconnect: the media legs to hang up when a give-back sent into the outage
        never reached Asterisk (the caller is put back), else None."""
        if self.active() is not None or not self._unsettled:
            return None
        self._unsettled = False
        return self.route.media_legs if self.route is not None else ()

    def media(self, event: Event) -> list[c.Command]:
        """Talk-through media events (also after the capture ended: the relay's evidence)."""
        return self._drive(self.route, event) if self.route is not None else []
