"""Out-of-band verification as a pure state machine.

answer -> find the customer by caller ID (blind index) -> unknown: ask for the customer number
(limited tries) -> choose the method (customer preference within the policy) -> send the code
(or ask for the authenticator code) -> collect digits (``#`` submits, ``*`` resends) -> check ->
set ``CALLSEC_RESULT`` / ``CALLSEC_METHOD`` / ``CALLSEC_CUSTOMER`` -> final prompt -> continue in
the dialplan (``verify``) or hand over to the ``connect`` flow. ``CALLSEC_CUSTOMER`` names the
customer only when the result is ``verified`` (:attr:`VerificationFlow.verified_customer`):
a caller who failed is nobody's customer to the dialplan or the agent.

The flow never reads a clock or a random source: times come with the events and the code comes
from the injected ``new_code``.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, auto

from callsec_ari.core import commands as c
from callsec_ari.core.digits import DigitCollector, Outcome, Result
from callsec_ari.core.errors import CHANNEL_GONE, ErrorId
from callsec_ari.core.events import (
    CallerHungUp,
    CallStarted,
    CommandFailed,
    DtmfReceived,
    PlaybackFinished,
    Resynchronised,
    TimerExpired,
)
from callsec_ari.core.flow import ANY, Step, Table, TableFlow
from callsec_ari.verification import protocol as p
from callsec_ari.verification.codes import CheckResult, OneTimeCode, new_code
from callsec_ari.verification.options import FINAL_PROMPTS, VerificationOptions

TIMER = "entry"
#: Failed command -> result ("": the call goes on; a prompt that had ended, a record logged).
SERVICE_FAILURES: dict[type[c.Command], str] = {
    p.LookupCustomer: "failed", p.DeliverCode: "delivery_failed", p.CheckTotp: "failed",
    p.CountCheck: "failed", p.RecordVerification: "", c.StopPlayback: "", c.Publish: ""}


class V(Enum):
    NEW = auto()
    LOOKUP = auto()
    ASK_NUMBER = auto()
    LOOKUP_NUMBER = auto()
    SENDING = auto()
    COLLECT = auto()
    CHECK_CODE = auto()
    CHECK_TOTP = auto()
    FAREWELL = auto()
    DONE = auto()


class VerificationFlow(TableFlow[V]):
    def __init__(self, call_id: str, options: VerificationOptions,
                 new_code: Callable[[int], str] = new_code) -> None:
        super().__init__(call_id, V.NEW)
        self.o = options
        self._new_code = new_code
        self.language = "en"
        self.caller_number = ""
        self.attestation = ""
        self.customer: p.CustomerView | None = None
        self.caller_id_matched = False
        self.method = "none"
        self.code: OneTimeCode | None = None
        self.collector = DigitCollector(self.o.code_spec())
        self.number_tries = 0
        self.timeouts = 0
        self.totp_failures = 0
        self.started_at = 0.0
        self.result = ""
        self._prompt_seq = 0
        self._prompts: list[str] = []
        self._final_id = ""
        self._language_forced = False

    @property
    def verified_customer(self) -> str:
        """The customer's ref once the caller proved to be them (``verified``), else ""."""
        return self.customer.ref if self.customer is not None and self.result == "verified" \
            else ""

    # -- helpers ------------------------------------------------------------------------
    def _play(self, *names: str, digits: str = "") -> c.Play:
        self._prompt_seq += 1
        playback_id = f"{self.call_id}-v{self._prompt_seq}"
        self._prompts.append(playback_id)
        media = [f"sound:callsec/{n}" for n in names]
        # one sound per digit, not ``digits:``: Asterisk cannot stop a playback while it says
        # digits ("not controllable"), so a caller typing during "ending in 0 7" kept hearing
        # the rest of the prompt and every channel command waited until it ended
        media[1:1] = [f"sound:digits/{d}" for d in digits]
        return c.Play(playback_id=playback_id, media=tuple(media), language=self.language)

    def _prompt_for_entry(self, *names: str, digits: str = "") -> list[c.Command]:
        self.collector.reset()
        return [self._play(*names, digits=digits),
                c.StartTimer(name=TIMER, seconds=self.collector.timeout)]

    def _progress(self, stage: str, **extra: str | int | bool) -> c.Publish:
        payload: dict[str, str | int | bool] = {"stage": stage, "method": self.method}
        payload.update(extra)
        return c.Publish(topic="verification", payload=tuple(payload.items()))

    # -- start and lookup -----------------------------------------------------------------
    def _start(self, event: CallStarted) -> Step[V]:
        self.language, self.started_at = event.language, event.at
        self.caller_number, self.attestation = event.caller_number, event.attestation
        self._language_forced = bool(event.option("lang"))
        commands: list[c.Command] = [c.Answer(), self._progress("started")]
        if self.o.require_code == "never":
            return _after(commands, self._finish("skipped"))
        commands.append(self._play("welcome"))
        if not self.caller_number:
            return _after(commands, self._ask_number())
        return V.LOOKUP, commands + [p.LookupCustomer(
            by="caller_id", value=self.caller_number, caller_number=self.caller_number)]

    def _ask_number(self, *before: str) -> Step[V]:
        self.collector = DigitCollector(self.o.number_spec())
        return V.ASK_NUMBER, self._prompt_for_entry(*before, "enter-customer-number")

    def _looked_up(self, event: p.CustomerResult) -> Step[V]:
        if event.rate_limited:
            return self._finish("locked")
        if event.customer is not None:
            self.caller_id_matched = self.state is V.LOOKUP
            return self._found(event.customer, event.at)
        if self.state is V.LOOKUP:
            return self._ask_number()
        self.number_tries += 1
        if self.number_tries >= self.o.customer_number_tries:
            return self._finish("unknown_caller")
        return self._ask_number("customer-not-found")

    def _found(self, customer: p.CustomerView, now: float) -> Step[V]:
        self.customer = customer
        if customer.language in ("en", "de") and not self._language_forced:
            self.language = customer.language
        if customer.locked:
            return self._finish("locked")
        if self.o.require_code == "risk" and self.caller_id_matched and \
                self.attestation.upper() in {a.upper() for a in self.o.trusted_attestation}:
            return self._finish("skipped")
        method = self.o.choose_method(customer)
        if method is None:
            return self._finish("no_contact")
        self.method = method
        self.collector = DigitCollector(self.o.code_spec())
        if method == "totp":
            return V.COLLECT, [self._progress("code_requested"),
                               *self._prompt_for_entry("enter-totp")]
        self.code = self.o.one_time_code(self._new_code(self.o.code_digits), now)
        return self._send(resend=False)

    # -- sending --------------------------------------------------------------------------
    def _send(self, *, resend: bool) -> Step[V]:
        assert self.code is not None and self.customer is not None
        return V.SENDING, [c.CancelTimer(name=TIMER),
                p.DeliverCode(method=self.method, customer_ref=self.customer.ref,
                              code=self.code.code, language=self.language, resend=resend,
                              caller_number=self.caller_number,
                              confirm=self.o.confirm(self.method))]

    def _answered(self, event: p.ConfirmationAnswered) -> Step[V]:
        """The customer answered the message: "Confirm" verifies the caller at once (the
        caller is moved on from the code prompt); "This is not me" ends ``denied``."""
        if self.code is None or event.method not in self.o.confirm(self.method):
            return self.state, []  # not offered (policy, or no message sent): ignored
        if not event.confirmed:
            return self._finish("denied", reason="customer_denied")
        self.method = event.method
        return self._finish("verified")

    def _delivered(self, event: p.CodeDelivered) -> Step[V]:
        progress = self._progress("code_sent")
        if self.code is not None and self.code.sends > 1:
            return V.COLLECT, [progress, *self._prompt_for_entry("code-resent", "enter-code")]
        if self.method == "sms":
            tail = self.customer.mobile_tail if self.customer else ""
            return V.COLLECT, [progress, *self._prompt_for_entry(
                "code-sent-sms", "enter-code", digits=tail)]
        return V.COLLECT, [progress, *self._prompt_for_entry("code-sent-email", "enter-code")]

    def _delivery_failed(self, event: p.CodeDeliveryFailed) -> Step[V]:
        if self.code is not None and self.code.sends > 1:
            # A resend failed; the first message may still arrive: keep collecting.
            return V.COLLECT, self._prompt_for_entry("enter-code")
        return self._finish("delivery_failed", reason=event.reason)

    # -- collecting -----------------------------------------------------------------------
    def _digit(self, event: DtmfReceived) -> Step[V]:
        if event.leg != "caller":
            return self.state, []
        first = self.collector.count == 0
        result = self.collector.feed(event.digit, event.at)
        commands = self._barge_in() if first and result.outcome is Outcome.PROGRESS else []
        return _after(commands, self._entry(result, event.at))

    def _barge_in(self) -> list[c.Command]:
        stops: list[c.Command] = [c.StopPlayback(playback_id=pid) for pid in self._prompts]
        self._prompts.clear()
        return stops

    def _timer(self, event: TimerExpired) -> Step[V]:
        if event.name != TIMER:
            return self.state, []
        return self._entry(self.collector.expire(), event.at)

    def _entry(self, result: Result, now: float) -> Step[V]:
        if result.outcome in (Outcome.PROGRESS, Outcome.RESTARTED):
            return self.state, [c.StartTimer(name=TIMER, seconds=self.collector.timeout)]
        if result.outcome is Outcome.SPECIAL:
            return self._resend(now)
        if result.outcome is Outcome.TIMEOUT:
            return self._timed_out()
        if result.outcome is Outcome.COMPLETE:
            if self.state is V.ASK_NUMBER:
                return V.LOOKUP_NUMBER, [
                    c.CancelTimer(name=TIMER),
                    p.LookupCustomer(by="customer_number", value=result.digits.take(),
                                     caller_number=self.caller_number)]
            return self._check(result.digits.take(), now)
        return self.state, []

    def _timed_out(self) -> Step[V]:
        if self.state is V.ASK_NUMBER:
            self.number_tries += 1
            if self.number_tries >= self.o.customer_number_tries:
                return self._finish("unknown_caller")
            return self._ask_number()
        self.timeouts += 1
        if self.timeouts >= 2:
            return self._finish("timeout")
        return self.state, self._prompt_for_entry(self._code_prompt())

    def _code_prompt(self) -> str:
        return "enter-totp" if self.method == "totp" else "enter-code"

    def _resend(self, now: float) -> Step[V]:
        if self.method == "totp" or self.code is None or not self.code.resend(now):
            return self.state, self._prompt_for_entry(self._code_prompt())
        return self._send(resend=True)

    def _check(self, candidate: str, now: float) -> Step[V]:
        if self.method == "totp":
            assert self.customer is not None
            return V.CHECK_TOTP, [c.CancelTimer(name=TIMER),
                    p.CheckTotp(customer_ref=self.customer.ref, candidate=candidate,
                                caller_number=self.caller_number)]
        assert self.code is not None and self.customer is not None
        outcome = self.code.check(candidate, now)
        if outcome is CheckResult.EXPIRED:
            return self._expired(now)
        if outcome not in (CheckResult.OK, CheckResult.WRONG):
            return self._finish("locked")
        # Every compared code is counted in the database at once, whatever ends the call
        # later. A right code waits for the count (over a limit it is refused); a wrong one
        # is counted while the caller hears "wrong code" (a lockout ends the call then).
        count = p.CountCheck(customer_ref=self.customer.ref, wrong=outcome is CheckResult.WRONG,
                             caller_number=self.caller_number)
        if outcome is CheckResult.OK:
            return V.CHECK_CODE, [c.CancelTimer(name=TIMER), count]
        if self.code.checks_left > 0:
            return self.state, [self._progress("code_wrong", attempt=self.code.checks),
                                *self._prompt_for_entry("code-wrong", "enter-code"), count]
        return _after([count], self._finish("locked"))

    def _check_counted(self, event: p.CheckCounted) -> Step[V]:
        if self.state is V.CHECK_CODE:
            return self._finish("locked" if event.locked else "verified")
        return self._finish("locked") if event.locked else (self.state, [])

    def _expired(self, now: float) -> Step[V]:
        assert self.code is not None
        sends = self.code.sends
        if sends >= self.o.max_sends:
            return self._finish("failed", reason="expired")
        self.code = self.o.one_time_code(self._new_code(self.o.code_digits), now, sends + 1)
        return _after([self._play("code-expired")], self._send(resend=True))

    def _totp_checked(self, event: p.TotpChecked) -> Step[V]:
        if event.ok:
            return self._finish("verified")
        self.totp_failures += 1
        if event.locked or self.totp_failures >= self.o.max_checks:
            return self._finish("locked")
        return V.COLLECT, [self._progress("code_wrong", attempt=self.totp_failures),
                           *self._prompt_for_entry("code-wrong", "enter-totp")]

    # -- the end --------------------------------------------------------------------------
    def _finish(self, result: str, reason: str = "") -> Step[V]:
        self.result = result
        self.collector.wipe()
        checks, sends = ((self.code.checks, self.code.sends) if self.code
                         else (self.totp_failures, 0))
        if self.code is not None:
            self.code.discard()
        ref = self.customer.ref if self.customer else ""
        method = self.method if result != "skipped" else "none"
        commands: list[c.Command] = [
            c.CancelTimer(name=TIMER),
            *self._barge_in(),
            c.SetVariables(values=(("CALLSEC_RESULT", result), ("CALLSEC_METHOD", method),
                                   ("CALLSEC_CUSTOMER", self.verified_customer))),
            p.RecordVerification(result=result, method=method, customer_ref=ref, checks=checks,
                                 sends=sends, caller_id_matched=self.caller_id_matched,
                                 started_at=self.started_at, caller_number=self.caller_number),
            self._progress("finished", result=result, **({"reason": reason} if reason else {})),
        ]
        prompts = FINAL_PROMPTS.get(result)
        if prompts is None or result == "hangup":
            return V.DONE, commands + self._done()
        return V.FAREWELL, [*commands, self._farewell(prompts)]

    def _farewell(self, prompts: tuple[str, ...]) -> c.Play:
        final = self._play(*prompts)
        self._prompts.clear()
        self._final_id = final.playback_id
        return final

    def _done(self) -> list[c.Command]:
        if self.o.continue_after and self.result != "hangup":
            return [c.ContinueDialplan(), c.Finish(result=self.result)]
        return [c.Finish(result=self.result)] if self.o.continue_after else []

    def _played(self, event: PlaybackFinished) -> Step[V]:
        return (V.DONE, self._done()) if event.playback_id == self._final_id else (self.state, [])

    def _hangup(self, event: CallerHungUp) -> Step[V]:
        if self.state is V.FAREWELL:
            self.result = self.result or "hangup"
            return V.DONE, [c.Finish(result=self.result)] if self.o.continue_after else []
        return self._finish("hangup")

    def _resynchronised(self, event: Resynchronised) -> Step[V]:
        """Back from an ARI outage: keys typed meanwhile were never heard, a prompt may have
        ended unseen. The entry starts over with a fresh prompt (keys heard before the outage
        are dropped; no attempt, timeout or try is counted); a final prompt plays again."""
        stops = self._barge_in()
        if self.state is V.FAREWELL:
            stops.append(c.StopPlayback(playback_id=self._final_id))
            return self.state, [*stops, self._farewell(FINAL_PROMPTS[self.result])]
        prompt = "enter-customer-number" if self.state is V.ASK_NUMBER else self._code_prompt()
        return self.state, [*stops, *self._prompt_for_entry(prompt)]

    def _failed(self, event: CommandFailed) -> Step[V]:
        result = SERVICE_FAILURES.get(event.command)
        if result == "" or (result is None and event.error_id == ErrorId.ARI_UNAVAILABLE
                            and self.state in (V.COLLECT, V.ASK_NUMBER)):
            return self.state, []  # unreachable: the entry timer runs on, a reconnect re-prompts
        if result is None:  # a channel command: the channel is most likely gone
            gone = event.error_id in CHANNEL_GONE
            self.result = "hangup" if gone else "failed"
            if not self.o.continue_after:  # in a connect call the connect flow ends the call
                return V.DONE, []
            # Still there (Asterisk failed otherwise): never leave the caller in Stasis.
            return V.DONE, [c.Finish(result=self.result)] if gone else \
                [c.ContinueDialplan(), c.Finish(result=self.result)]
        if self.state is V.FAREWELL:
            return self.state, []
        return self._finish(result, reason=event.error_id)


def _after(commands: list[c.Command], step: Step[V]) -> Step[V]:
    """``commands``, then those of ``step``, into its next state."""
    return step[0], [*commands, *step[1]]


#: ``_finish``: the farewell prompt, or DONE at once.
_END = (V.FAREWELL, V.DONE)
TABLE = Table[VerificationFlow, V](V, final=(V.DONE,), ignored=(
    PlaybackFinished, TimerExpired, DtmfReceived, Resynchronised, p.CodeDelivered,
    p.CodeDeliveryFailed, p.CheckCounted, p.ConfirmationAnswered))
TABLE.on(V.NEW, CallStarted, VerificationFlow._start, V.LOOKUP, V.ASK_NUMBER, *_END)
TABLE.on((V.LOOKUP, V.LOOKUP_NUMBER), p.CustomerResult, VerificationFlow._looked_up,
         V.ASK_NUMBER, V.SENDING, V.COLLECT, *_END)
TABLE.on(V.ASK_NUMBER, DtmfReceived, VerificationFlow._digit, V.LOOKUP_NUMBER, *_END)
TABLE.on(V.ASK_NUMBER, TimerExpired, VerificationFlow._timer, V.LOOKUP_NUMBER, *_END)
TABLE.on(V.SENDING, p.CodeDelivered, VerificationFlow._delivered, V.COLLECT)
TABLE.on(V.SENDING, p.CodeDeliveryFailed, VerificationFlow._delivery_failed, V.COLLECT, *_END)
TABLE.on(V.COLLECT, DtmfReceived, VerificationFlow._digit,
         V.SENDING, V.CHECK_CODE, V.CHECK_TOTP, *_END)
TABLE.on(V.COLLECT, TimerExpired, VerificationFlow._timer,
         V.SENDING, V.CHECK_CODE, V.CHECK_TOTP, *_END)
TABLE.on(V.CHECK_TOTP, p.TotpChecked, VerificationFlow._totp_checked, V.COLLECT, *_END)
TABLE.on((V.CHECK_CODE, V.COLLECT), p.CheckCounted, VerificationFlow._check_counted, *_END)
TABLE.on((V.SENDING, V.COLLECT, V.CHECK_CODE), p.ConfirmationAnswered,
         VerificationFlow._answered, *_END)
TABLE.on(V.FAREWELL, PlaybackFinished, VerificationFlow._played, V.DONE)
TABLE.on((V.COLLECT, V.ASK_NUMBER, V.FAREWELL), Resynchronised,
         VerificationFlow._resynchronised)
TABLE.on(ANY, CallerHungUp, VerificationFlow._hangup, V.DONE)
TABLE.on(ANY, CommandFailed, VerificationFlow._failed, *_END)
VerificationFlow.TABLE = TABLE
