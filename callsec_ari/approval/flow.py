"""One payment approval inside a ``connect`` call (pure, sans-I/O).

The service has already sent the customer a message naming amount, payee, company and call
reference with a one-time code bound to those terms. The flow then steers the caller as a
capture does (``capture/steering.py``): recordings muted -> caller moved into the capture
bridge ``callsec-capture-<call id>`` (``absorb_dtmf``: the agent's phone gets no DTMF) -> the
agent hears the hold loop -> the caller types the code -> the service checks it
(:class:`CheckApprovalCode` -> :class:`ApprovalChecked`) -> the caller goes back, recordings
are unmuted, the record is signed and stored (:class:`FinishApproval`).

The agent sees ``approved``, ``declined`` (the caller pressed ``#`` without a code) or
``failed`` (wrong code too often, expired, replayed, locked out, timeout, cancelled, a leg left).

:class:`ApprovalSteering` is a :class:`CaptureSteering` so the connect flow hosts it in its
capture slot (``connect/captures.py``: one caller-side entry at a time; DTMF, timers, hang-ups
and reconnects are routed as for captures); its own transitions are the table
:data:`ApprovalSteering.TABLE`, keyed by ``(stage, event type)``; other events are a capture's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.entry import EntryOptions, FieldEntry
from callsec_ari.capture.fields import ValidationContext
from callsec_ari.capture.steering import OVERALL, CaptureSteering, SteeringOptions
from callsec_ari.core import commands as c
from callsec_ari.core.digits import CollectorSpec, DigitCollector, Outcome, SensitiveDigits
from callsec_ari.core.events import (
    ApprovalChecked,
    CommandFailed,
    DtmfReceived,
    Event,
    TimerExpired,
)

if TYPE_CHECKING:
    from callsec_ari.config import Settings

ENTRY = "approval-entry"
TOPIC = "approval"
#: What the agent is shown: every other ending is ``failed`` (its reason stays in the record).
RESULTS = ("approved", "declined", "failed")
#: Check results of the service -> the reason an approval failed.
FAILED_CHECKS = {"expired": "expired", "used": "replayed", "exhausted": "locked",
                 "locked": "locked", "terms_changed": "terms_changed"}
_RETURN_PROMPTS = {"approved": "capture-complete", "expired": "code-expired",
                   "locked": "locked"}


# --- events and commands ---------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ApprovalRequested(Event):
    """The code is on its way to the customer: start steering the caller."""

    approval_id: str
    requested_by: str = "agent"


@dataclass(frozen=True, kw_only=True)
class MuteForApproval(c.Command):
    """(Un)mute the caller's MixMonitor recordings -> ``RecordingMuted`` / ``CommandFailed``."""

    approval_id: str
    mute: bool


@dataclass(frozen=True, kw_only=True)
class CheckApprovalCode(c.Command):
    """Check the typed code against the approval's (bound to its terms) -> ApprovalChecked.
    The service wipes the holder."""

    approval_id: str
    candidate: SensitiveDigits = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class FinishApproval(c.Command):
    """Sign and store the approval record, audit it, tell the webhooks."""

    approval_id: str
    result: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class ApprovalOptions:
    code_digits: int = 6
    max_attempts: int = 3
    first_digit_timeout: float = 15.0
    inter_digit_timeout: float = 6.0
    entry_timeout: float = 180.0


def approval_options(settings: Settings) -> ApprovalOptions:
    v = settings.verification
    return ApprovalOptions(code_digits=settings.approval.code_digits,
                           max_attempts=settings.approval.max_attempts,
                           first_digit_timeout=v.first_digit_timeout_seconds,
                           inter_digit_timeout=v.inter_digit_timeout_seconds,
                           entry_timeout=settings.approval.entry_timeout_seconds)


def _placeholder_entry(approval_id: str, context: ValidationContext) -> FieldEntry:
    """The capture slot's field entry, never started: an approval types a code, no field."""
    return FieldEntry(approval_id, ("cvv",), context, EntryOptions())


class ApprovalSteering(CaptureSteering):
    """``stage``: ``muting`` -> ``entering`` <-> ``checking`` -> ``done``."""

    def __init__(self, event: ApprovalRequested, context: ValidationContext,
                 steering: SteeringOptions, options: ApprovalOptions) -> None:
        request = cp.CaptureRequested(capture_id=event.approval_id, fields=(),
                                      requested_by=event.requested_by, at=event.at)
        super().__init__(request, _placeholder_entry(event.approval_id, context), steering)
        self.a = options
        self.attempt = 1
        self.reason = ""
        self._prompt_seq = 0
        self._prompts: list[str] = []
        self.collector = DigitCollector(self._spec())

    @property
    def approval_id(self) -> str:
        return self.capture_id

    # -- the table ---------------------------------------------------------------------------
    def handle(self, event: Event) -> list[c.Command]:
        transition = self.TABLE.get((self.stage, type(event)))
        if transition is not None:
            return transition(self, event)
        return [] if isinstance(event, _OWN_EVENTS) else super().handle(event)

    def _on_muted(self, event: cp.RecordingMuted) -> list[c.Command]:
        return self.muted() if event.mute else []

    def _on_digit(self, event: DtmfReceived) -> list[c.Command]:
        if event.leg != "caller":
            return []
        if event.digit == "#" and self.collector.count == 0:
            return self.give_back("declined", "declined_by_caller")
        result = self.collector.feed(event.digit, event.at)
        if result.outcome is Outcome.COMPLETE:
            return self._submit(result.digits)
        if result.outcome in (Outcome.PROGRESS, Outcome.RESTARTED):
            return [c.StartTimer(name=ENTRY, seconds=self.collector.timeout)]
        return []

    def _on_timer(self, event: TimerExpired) -> list[c.Command]:
        if event.name == OVERALL:
            return self.give_back("failed", "timeout")
        if event.name != ENTRY or self.stage != "entering":
            return []
        result = self.collector.expire()
        if result.outcome is Outcome.COMPLETE:
            return self._submit(result.digits)
        return self._wrong("timeout") if result.outcome is Outcome.TIMEOUT else []

    def _on_checked(self, event: ApprovalChecked) -> list[c.Command]:
        if event.approval_id != self.approval_id:
            return []
        if event.result == "ok":
            return self.give_back("approved")
        if event.result == "denied":  # "this is not me" on the link page or by SMS (#18.7)
            return self.give_back("declined", "customer_denied")
        if event.result == "wrong":
            return self._wrong("wrong_code")
        return self.give_back("failed", FAILED_CHECKS.get(event.result, "check_failed"))

    TABLE: Mapping[tuple[str, type[Event]], Callable[[Any, Any], list[c.Command]]] = {
        ("muting", cp.RecordingMuted): _on_muted,
        ("entering", DtmfReceived): _on_digit,
        ("entering", TimerExpired): _on_timer,
        ("checking", TimerExpired): _on_timer,
        ("checking", ApprovalChecked): _on_checked,
        # the customer answered the message without typing (verification/confirm.py)
        ("entering", ApprovalChecked): _on_checked,
    }

    # -- the connect flow's capture API ------------------------------------------------------
    def start(self) -> list[c.Command]:
        return [self._publish_a("requested", requested_by=self.request.requested_by),
                MuteForApproval(approval_id=self.approval_id, mute=True)]

    def muted(self) -> list[c.Command]:
        return [*self.steer_in(), self._publish_a("started"), *self._prompt()]

    def stored(self) -> list[c.Command]:
        return []

    def mute_failed(self, error_id: str) -> list[c.Command]:
        self.stage, self.result, self.reason = "done", "failed", "recording_mute_failed"
        return [self._publish_a("finished", result="failed", reason=self.reason),
                FinishApproval(approval_id=self.approval_id, result="failed",
                               reason=self.reason)]

    def give_back(self, result: str, reason: str = "") -> list[c.Command]:
        """End the entry and return the caller to the agent's bridge."""
        if result not in RESULTS:  # cancelled by the agent or the API, a reconnect...
            result, reason = "failed", reason or result
        self.collector.wipe()
        self.stage, self.result, self.reason = "done", result, reason
        prompt = _RETURN_PROMPTS.get(result) or _RETURN_PROMPTS.get(reason, "capture-cancelled")
        return [
            c.CancelTimer(name=OVERALL), c.CancelTimer(name=ENTRY),
            c.StopPlayback(playback_id=self.loop_id),
            *[c.StopPlayback(playback_id=pid) for pid in self._prompts],
            c.RemoveFromBridge(bridge_id=self.o.capture_bridge, leg="caller"),
            c.AddToBridge(bridge_id=self.o.agent_bridge, leg="caller", absorb_dtmf=True),
            c.DestroyBridge(bridge_id=self.o.capture_bridge),
            MuteForApproval(approval_id=self.approval_id, mute=False),
            c.Play(playback_id=f"{self.approval_id}-back", language=self.o.language,
                   media=(f"sound:callsec/{prompt}", "sound:beep")),
            c.Play(playback_id=f"{self.approval_id}-beep", media=("sound:beep",), leg="agent"),
            self._publish_a("finished", result=result, **({"reason": reason} if reason else {})),
            FinishApproval(approval_id=self.approval_id, result=result, reason=reason),
        ]

    def abandon(self, result: str, reason: str) -> list[c.Command]:
        """A leg left: nothing typed is kept; recorded as failed."""
        self.collector.wipe()
        self.stage, self.result, self.reason = "done", "failed", reason or result
        return [c.CancelTimer(name=OVERALL), c.CancelTimer(name=ENTRY),
                c.DestroyBridge(bridge_id=self.o.capture_bridge),
                MuteForApproval(approval_id=self.approval_id, mute=False),
                self._publish_a("finished", result="failed", reason=self.reason),
                FinishApproval(approval_id=self.approval_id, result="failed",
                               reason=self.reason)]

    def failed(self, event: CommandFailed) -> list[c.Command]:
        """A command of this approval failed."""
        if event.command is MuteForApproval and self.stage == "muting":
            return self.mute_failed(event.error_id)
        if event.command is CheckApprovalCode and self.stage == "checking":
            return self.give_back("failed", "check_failed")
        if issubclass(event.command, (c.CreateBridge, c.AddToBridge, c.RemoveFromBridge)) \
                and self.stage != "done":
            return self.give_back("failed", "bridge_failed")
        return []

    # -- helpers -----------------------------------------------------------------------------
    def _spec(self) -> CollectorSpec:
        return CollectorSpec(min_digits=self.a.code_digits, max_digits=self.a.code_digits,
                             auto_complete=True, restart_key="*",
                             first_digit_timeout=self.a.first_digit_timeout,
                             inter_digit_timeout=self.a.inter_digit_timeout)

    def _prompt(self, *before: str) -> list[c.Command]:
        self.collector = DigitCollector(self._spec())
        self._prompt_seq += 1
        playback_id = f"{self.approval_id}-p{self._prompt_seq}"
        self._prompts.append(playback_id)
        media = tuple(f"sound:callsec/{name}" for name in (*before, "enter-code"))
        return [c.Play(playback_id=playback_id, media=media, language=self.o.language),
                c.StartTimer(name=ENTRY, seconds=self.collector.timeout)]

    def _submit(self, holder: SensitiveDigits) -> list[c.Command]:
        self.stage = "checking"
        return [c.CancelTimer(name=ENTRY), self._publish_a("checking", attempt=self.attempt),
                CheckApprovalCode(approval_id=self.approval_id, candidate=holder)]

    def _wrong(self, reason: str) -> list[c.Command]:
        if self.attempt >= self.a.max_attempts:
            return self.give_back("failed", reason)
        self.attempt += 1
        self.stage = "entering"
        prompt = "code-wrong" if reason == "wrong_code" else "entry-too-short"
        return [self._publish_a("retry", attempt=self.attempt, reason=reason),
                *self._prompt(prompt)]

    def _publish_a(self, stage: str, **extra: str | int | bool) -> c.Publish:
        payload: dict[str, str | int | bool] = {"approval_id": self.approval_id,
                                                "stage": stage}
        payload.update(extra)
        return c.Publish(topic=TOPIC, payload=tuple(payload.items()))


#: Events only :data:`ApprovalSteering.TABLE` answers (dropped in a stage it has no entry for).
_OWN_EVENTS = (cp.RecordingMuted, DtmfReceived, TimerExpired, ApprovalChecked)
