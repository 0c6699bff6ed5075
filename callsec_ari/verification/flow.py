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
from dataclasses import dataclass
from enum import Enum, auto

from callsec_ari.core import commands as c
from callsec_ari.core.digits import CollectorSpec, DigitCollector, Outcome, Result
from callsec_ari.core.events import (
    CallerHungUp,
    CallStarted,
    CommandFailed,
    DtmfReceived,
    PlaybackFinished,
    Resynchronised,
    TimerExpired,
)
from callsec_ari.core.flow import ANY, TableFlow
from callsec_ari.verification import protocol as p
from callsec_ari.verification.codes import CheckResult, OneTimeCode, new_code

TIMER = "entry"
FINAL_PROMPTS = {
    "verified": ("verified",), "failed": ("verification-failed", "goodbye"),
    "locked": ("locked", "goodbye"), "unknown_caller": ("customer-not-found", "goodbye"),
    "no_contact": ("no-contact", "goodbye"), "delivery_failed": ("delivery-failed", "goodbye"),
    "timeout": ("verification-failed", "goodbye"), "denied": ("verification-failed", "goodbye"),
}
#: Policy methods that answer the code message without typing: a one-time link, an SMS reply.
CONFIRM_METHODS = ("link", "sms_reply")
#: Failed command -> the verification's result ("": the call goes on; a stopped prompt that
#: had ended already, say, or a record the service could not write and logged).
SERVICE_FAILURES = {"LookupCustomer": "failed", "DeliverCode": "delivery_failed",
                    "CheckTotp": "failed", "CountCheck": "failed", "RecordVerification": "",
                    "StopPlayback": "", "Publish": ""}
#: ``CommandFailed.error_id`` of a channel command Asterisk could not be reached for.
UNREACHABLE = "ari_unavailable"


@dataclass(frozen=True, kw_only=True)
class VerificationOptions:
    require_code: str = "always"          # always | risk | never
    trusted_attestation: tuple[str, ...] = ("A",)
    methods: tuple[str, ...] = ("sms", "email", "totp")
    code_digits: int = 6
    code_ttl: float = 600.0
    max_checks: int = 5
    max_sends: int = 5
    customer_number_tries: int = 3
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0
    #: ``verify``: continue in the dialplan at the end; ``connect``: stop and let it decide.
    continue_after: bool = True


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
    FINAL_STATES = frozenset({V.DONE})
    IGNORED_EVERYWHERE = (PlaybackFinished, TimerExpired, DtmfReceived, Resynchronised,
                          p.CodeDelivered, p.CodeDeliveryFailed, p.CheckCounted,
                          p.ConfirmationAnswered)

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
        self.collector = DigitCollector(self._code_spec())
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
    def _code_spec(self) -> CollectorSpec:
        return CollectorSpec(min_digits=self.o.code_digits, max_digits=self.o.code_digits,
                             special_keys=frozenset("*"), restart_key=None,
                             first_digit_timeout=self.o.first_digit_timeout,
                             inter_digit_timeout=self.o.inter_digit_timeout)

    def _number_spec(self) -> CollectorSpec:
        return CollectorSpec(min_digits=4, max_digits=16,
                             first_digit_timeout=self.o.first_digit_timeout,
                             inter_digit_timeout=self.o.inter_digit_timeout)

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
    def _start(self, event: CallStarted) -> list[c.Command]:
        self.language, self.started_at = event.language, event.at
        self.caller_number, self.attestation = event.caller_number, event.attestation
        self._language_forced = bool(event.option("lang"))
        commands: list[c.Command] = [c.Answer(), self._progress("started")]
        if self.o.require_code == "never":
            return commands + self._finish("skipped")
        commands.append(self._play("welcome"))
        if not self.caller_number:
            return commands + self._ask_number()
        self.state = V.LOOKUP
        return commands + [p.LookupCustomer(by="caller_id", value=self.caller_number,
                                            caller_number=self.caller_number)]

    def _ask_number(self, *before: str) -> list[c.Command]:
        self.state = V.ASK_NUMBER
        self.collector = DigitCollector(self._number_spec())
        return self._prompt_for_entry(*before, "enter-customer-number")

    def _looked_up(self, event: p.CustomerResult) -> list[c.Command]:
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

    def _found(self, customer: p.CustomerView, now: float) -> list[c.Command]:
        self.customer = customer
        if customer.language in ("en", "de") and not self._language_forced:
            self.language = customer.language
        if customer.locked:
            return self._finish("locked")
        if self.o.require_code == "risk" and self.caller_id_matched and \
                self.attestation.upper() in {a.upper() for a in self.o.trusted_attestation}:
            return self._finish("skipped")
        method = self._choose_method(customer)
        if method is None:
            return self._finish("no_contact")
        self.method = method
        self.collector = DigitCollector(self._code_spec())
        if method == "totp":
            self.state = V.COLLECT
            return [self._progress("code_requested")] + self._prompt_for_entry("enter-totp")
        self.code = OneTimeCode(code=self._new_code(self.o.code_digits), created_at=now,
                                ttl=self.o.code_ttl, max_checks=self.o.max_checks,
                                max_sends=self.o.max_sends)
        return self._send(resend=False)

    def _choose_method(self, customer: p.CustomerView) -> str | None:
        available = {"sms": customer.has_mobile, "email": customer.has_email,
                     "totp": customer.has_totp}
        order = list(self.o.methods)
        if customer.preferred_method in order:
            order.remove(customer.preferred_method)
            order.insert(0, customer.preferred_method)
        return next((m for m in order if available.get(m)), None)

    # -- sending --------------------------------------------------------------------------
    def _send(self, *, resend: bool) -> list[c.Command]:
        assert self.code is not None and self.customer is not None
        self.state = V.SENDING
        return [c.CancelTimer(name=TIMER),
                p.DeliverCode(method=self.method, customer_ref=self.customer.ref,
                              code=self.code.code, language=self.language, resend=resend,
                              caller_number=self.caller_number, confirm=self._confirm())]

    def _confirm(self) -> tuple[str, ...]:
        """The policy's ways to answer this message without typing (a reply needs an SMS)."""
        return tuple(m for m in CONFIRM_METHODS
                     if m in self.o.methods and (m != "sms_reply" or self.method == "sms"))

    def _answered(self, event: p.ConfirmationAnswered) -> list[c.Command]:
        """The customer answered the message: "Confirm" verifies the caller at once (the
        caller is moved on from the code prompt); "This is not me" ends ``denied``."""
        if self.code is None or event.method not in self._confirm():
            return []  # not offered for this call (policy, or no message sent): ignored
        if not event.confirmed:
            return self._finish("denied", reason="customer_denied")
        self.method = event.method
        return self._finish("verified")

    def _delivered(self, event: p.CodeDelivered) -> list[c.Command]:
        self.state = V.COLLECT
        progress = self._progress("code_sent")
        if self.code is not None and self.code.sends > 1:
            return [progress] + self._prompt_for_entry("code-resent", "enter-code")
        if self.method == "sms":
            tail = self.customer.mobile_tail if self.customer else ""
            return [progress] + self._prompt_for_entry("code-sent-sms", "enter-code", digits=tail)
        return [progress] + self._prompt_for_entry("code-sent-email", "enter-code")

    def _delivery_failed(self, event: p.CodeDeliveryFailed) -> list[c.Command]:
        if self.code is not None and self.code.sends > 1:
            # A resend failed; the first message may still arrive: keep collecting.
            self.state = V.COLLECT
            return self._prompt_for_entry("enter-code")
        return self._finish("delivery_failed", reason=event.reason)

    # -- collecting -----------------------------------------------------------------------
    def _digit(self, event: DtmfReceived) -> list[c.Command]:
        if event.leg != "caller":
            return []
        first = self.collector.count == 0
        result = self.collector.feed(event.digit, event.at)
        commands = self._barge_in() if first and result.outcome is Outcome.PROGRESS else []
        return commands + self._entry(result, event.at)

    def _barge_in(self) -> list[c.Command]:
        stops: list[c.Command] = [c.StopPlayback(playback_id=pid) for pid in self._prompts]
        self._prompts.clear()
        return stops

    def _timer(self, event: TimerExpired) -> list[c.Command]:
        return self._entry(self.collector.expire(), event.at) if event.name == TIMER else []

    def _entry(self, result: Result, now: float) -> list[c.Command]:
        if result.outcome in (Outcome.PROGRESS, Outcome.RESTARTED):
            return [c.StartTimer(name=TIMER, seconds=self.collector.timeout)]
        if result.outcome is Outcome.SPECIAL:
            return self._resend(now)
        if result.outcome is Outcome.TIMEOUT:
            return self._timed_out()
        if result.outcome is Outcome.COMPLETE:
            if self.state is V.ASK_NUMBER:
                self.state = V.LOOKUP_NUMBER
                return [c.CancelTimer(name=TIMER),
                        p.LookupCustomer(by="customer_number", value=result.digits.take(),
                                         caller_number=self.caller_number)]
            return self._check(result.digits.take(), now)
        return []

    def _timed_out(self) -> list[c.Command]:
        if self.state is V.ASK_NUMBER:
            self.number_tries += 1
            if self.number_tries >= self.o.customer_number_tries:
                return self._finish("unknown_caller")
            return self._ask_number()
        self.timeouts += 1
        if self.timeouts >= 2:
            return self._finish("timeout")
        return self._prompt_for_entry("enter-totp" if self.method == "totp" else "enter-code")

    def _resend(self, now: float) -> list[c.Command]:
        if self.method == "totp" or self.code is None or not self.code.resend(now):
            return self._prompt_for_entry("enter-totp" if self.method == "totp" else "enter-code")
        return self._send(resend=True)

    def _check(self, candidate: str, now: float) -> list[c.Command]:
        if self.method == "totp":
            assert self.customer is not None
            self.state = V.CHECK_TOTP
            return [c.CancelTimer(name=TIMER),
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
            self.state = V.CHECK_CODE
            return [c.CancelTimer(name=TIMER), count]
        if self.code.checks_left > 0:
            return [self._progress("code_wrong", attempt=self.code.checks),
                    *self._prompt_for_entry("code-wrong", "enter-code"), count]
        return [count, *self._finish("locked")]

    def _check_counted(self, event: p.CheckCounted) -> list[c.Command]:
        if self.state is V.CHECK_CODE:
            return self._finish("locked" if event.locked else "verified")
        return self._finish("locked") if event.locked else []

    def _expired(self, now: float) -> list[c.Command]:
        assert self.code is not None
        sends = self.code.sends
        if sends >= self.o.max_sends:
            return self._finish("failed", reason="expired")
        self.code = OneTimeCode(code=self._new_code(self.o.code_digits), created_at=now,
                                ttl=self.o.code_ttl, max_checks=self.o.max_checks,
                                max_sends=self.o.max_sends, sends=sends + 1)
        return [self._play("code-expired"), *self._send(resend=True)]

    def _totp_checked(self, event: p.TotpChecked) -> list[c.Command]:
        if event.ok:
            return self._finish("verified")
        self.totp_failures += 1
        if event.locked or self.totp_failures >= self.o.max_checks:
            return self._finish("locked")
        self.state = V.COLLECT
        return [self._progress("code_wrong", attempt=self.totp_failures)] + \
            self._prompt_for_entry("code-wrong", "enter-totp")

    # -- the end --------------------------------------------------------------------------
    def _finish(self, result: str, reason: str = "") -> list[c.Command]:
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
            return commands + self._done()
        return [*commands, self._farewell(prompts)]

    def _farewell(self, prompts: tuple[str, ...]) -> c.Play:
        self.state = V.FAREWELL
        final = self._play(*prompts)
        self._prompts.clear()
        self._final_id = final.playback_id
        return final

    def _done(self) -> list[c.Command]:
        self.state = V.DONE
        if self.o.continue_after and self.result != "hangup":
            return [c.ContinueDialplan(), c.Finish(result=self.result)]
        return [c.Finish(result=self.result)] if self.o.continue_after else []

    def _played(self, event: PlaybackFinished) -> list[c.Command]:
        return self._done() if event.playback_id == self._final_id else []

    def _hangup(self, event: CallerHungUp) -> list[c.Command]:
        if self.state is V.FAREWELL:
            self.result = self.result or "hangup"
            self.state = V.DONE
            return [c.Finish(result=self.result)] if self.o.continue_after else []
        return self._finish("hangup")

    def _resynchronised(self, event: Resynchronised) -> list[c.Command]:
        """Back from an ARI outage: keys typed meanwhile were never heard, a prompt may have
        ended unseen. The entry starts over with a fresh prompt (keys heard before the outage
        are dropped; no attempt, timeout or try is counted); a final prompt plays again."""
        stops = self._barge_in()
        if self.state is V.FAREWELL:
            stops.append(c.StopPlayback(playback_id=self._final_id))
            return [*stops, self._farewell(FINAL_PROMPTS[self.result])]
        prompt = ("enter-customer-number" if self.state is V.ASK_NUMBER
                  else "enter-totp" if self.method == "totp" else "enter-code")
        return [*stops, *self._prompt_for_entry(prompt)]

    def _failed(self, event: CommandFailed) -> list[c.Command]:
        result = SERVICE_FAILURES.get(event.command)
        if result == "" or (result is None and event.error_id == UNREACHABLE
                            and self.state in (V.COLLECT, V.ASK_NUMBER)):
            return []  # unreachable: the entry timer runs on and a reconnect re-prompts
        if result is None:  # a channel command: the channel is most likely gone
            gone = "not_found" in event.error_id
            self.result = "hangup" if gone else "failed"
            self.state = V.DONE  # in a connect call the connect flow finishes the call
            if not self.o.continue_after:
                return []
            # Still there (Asterisk failed otherwise): never leave the caller in Stasis.
            return [c.Finish(result=self.result)] if gone else \
                [c.ContinueDialplan(), c.Finish(result=self.result)]
        if self.state is V.FAREWELL:
            return []
        return self._finish(result, reason=event.error_id)

    TABLE = {
        (V.NEW, CallStarted): _start,
        (V.LOOKUP, p.CustomerResult): _looked_up,
        (V.LOOKUP_NUMBER, p.CustomerResult): _looked_up,
        (V.ASK_NUMBER, DtmfReceived): _digit,
        (V.ASK_NUMBER, TimerExpired): _timer,
        (V.SENDING, p.CodeDelivered): _delivered,
        (V.SENDING, p.CodeDeliveryFailed): _delivery_failed,
        (V.COLLECT, DtmfReceived): _digit,
        (V.COLLECT, TimerExpired): _timer,
        (V.CHECK_TOTP, p.TotpChecked): _totp_checked,
        (V.CHECK_CODE, p.CheckCounted): _check_counted,
        (V.COLLECT, p.CheckCounted): _check_counted,
        (V.SENDING, p.ConfirmationAnswered): _answered,
        (V.COLLECT, p.ConfirmationAnswered): _answered,
        (V.CHECK_CODE, p.ConfirmationAnswered): _answered,
        (V.FAREWELL, PlaybackFinished): _played,
        (V.COLLECT, Resynchronised): _resynchronised,
        (V.ASK_NUMBER, Resynchronised): _resynchronised,
        (V.FAREWELL, Resynchronised): _resynchronised,
        (ANY, CallerHungUp): _hangup,
        (ANY, CommandFailed): _failed,
    }

