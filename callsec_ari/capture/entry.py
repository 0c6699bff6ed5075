"""Entering the fields of one capture on the keypad (pure; shared by the agent-requested
capture in ``connect`` calls and the self-service AGI capture).

Per field: play its prompt, collect digits (``#`` ends, ``*`` restarts, first-digit and
inter-digit timeouts, fixed-length fields end by themselves, duplicate DTMF ENDs dropped),
validate, and either go on, re-prompt ("invalid entry") or give up after ``max_attempts``.
Optionally every number is entered twice to confirm. Progress goes out as masked ``Publish``
commands (``field_started`` names the field being asked, ``field_requested`` a field asked
again; count as dots, brand once known,
valid/invalid with a reason id such as ``luhn``, ``expired``, ``too_short``; attempt number).

Field-level control (:meth:`FieldEntry.control`, issue #18): ``rerequest`` asks one field again
in any order (an entered value is discarded; the field being typed goes back into the queue
after it), ``cancel`` drops a field from this capture, ``skip`` drops an optional one. On the
keypad, ``*`` as the first key after a field's prompt re-asks the field before it (``*`` later
in an entry still clears that entry). A capture whose every field was dropped ends ``cancelled``.
"""

from __future__ import annotations

from dataclasses import dataclass

from callsec_ari.capture.fields import (
    IIN_DIGITS,
    FieldKind,
    ValidationContext,
    card_brand,
    spec_for,
)
from callsec_ari.capture.prompts import error_prompt
from callsec_ari.core import commands as c
from callsec_ari.core.digits import (
    CollectorSpec,
    DigitCollector,
    Outcome,
    Result,
    SensitiveDigits,
)
from callsec_ari.core.masking import MASK_CHAR, MaskedResult, mask_result

TIMER = "capture-entry"
CONFIRMABLE = frozenset({FieldKind.CARD_NUMBER, FieldKind.IBAN, FieldKind.NATIONAL_ID})


@dataclass(frozen=True, kw_only=True)
class EntryOptions:
    max_attempts: int = 3
    confirm_twice: bool = False
    first_digit_timeout: float = 15.0
    inter_digit_timeout: float = 6.0
    #: Multiplies both timeouts (``slow=1`` in the request or the caller's profile).
    slow_factor: float = 1.0
    language: str = "en"


class FieldEntry:
    """Collects ``fields`` in order. ``outcome`` is ``""`` while running, then ``captured``,
    ``invalid`` (a field failed ``max_attempts`` times) or ``timeout``."""

    def __init__(self, capture_id: str, fields: tuple[str, ...], context: ValidationContext,
                 options: EntryOptions, optional: tuple[str, ...] = ()) -> None:
        self.capture_id = capture_id
        self.fields = tuple(FieldKind(f) for f in fields)
        self.context = context
        self.o = options
        self.optional = frozenset(FieldKind(f) for f in optional)
        #: The field being asked, and the ones still to ask after it (in order).
        self.current = self.fields[0]
        self.pending: list[FieldKind] = list(self.fields[1:])
        #: Fields dropped from this capture: kind -> ``cancelled`` | ``skipped``.
        self.dropped: dict[str, str] = {}
        self._typed = False  # a key was pressed since the current field's prompt
        self.attempt = 1
        self.outcome = ""
        self.reason = ""
        self.values: dict[str, SensitiveDigits] = {}
        self.masked: dict[str, MaskedResult] = {}
        self.collector = DigitCollector(self._spec())
        self._first_entry: SensitiveDigits | None = None
        self._prompt_seq = 0
        self.prompts: list[str] = []
        #: The card brand once the entry has its IIN (first 6 digits); reset per entry.
        self._brand: str | None = None

    @property
    def kind(self) -> FieldKind:
        return self.current

    def _spec(self) -> CollectorSpec:
        spec = spec_for(self.kind, self.context)
        slow = max(self.o.slow_factor, 1.0)
        return CollectorSpec(
            min_digits=spec.min_digits, max_digits=spec.max_digits,
            auto_complete=not spec.needs_terminator, restart_key="*",
            first_digit_timeout=self.o.first_digit_timeout * slow,
            inter_digit_timeout=self.o.inter_digit_timeout * slow)

    def _play(self, *names: str) -> c.Play:
        self._prompt_seq += 1
        playback_id = f"{self.capture_id}-p{self._prompt_seq}"
        self.prompts.append(playback_id)
        return c.Play(playback_id=playback_id, media=tuple(f"sound:callsec/{n}" for n in names),
                      language=self.o.language)

    def _publish(self, stage: str, kind: FieldKind | None = None,
                 **extra: str | int | bool | None) -> c.Publish:
        payload: dict[str, str | int | bool] = {
            "capture_id": self.capture_id, "stage": stage, "field": (kind or self.kind).value,
            "attempt": self.attempt}
        payload.update({k: v for k, v in extra.items() if v is not None})
        return c.Publish(topic="capture", payload=tuple(payload.items()))

    def _prompt(self, *before: str) -> list[c.Command]:
        self.collector = DigitCollector(self._spec())
        self._typed = False
        name = spec_for(self.kind, self.context).prompt.removeprefix("callsec/")
        if self._first_entry is not None:
            name = "enter-again-to-confirm"
        return [self._play(*before, name), c.StartTimer(name=TIMER, seconds=self.collector.timeout)]

    # -- driving ---------------------------------------------------------------------------
    def start(self, again: bool = False) -> list[c.Command]:
        """``again``: the field is asked again (a re-opened capture)."""
        return [*self._requested(again), *self._prompt()]

    def _requested(self, again: bool = False) -> list[c.Command]:
        """``field_started`` names the field being asked (``field_requested`` before it when
        the field is asked again on request)."""
        started = self._publish("field_started", count=0, dots="",
                                optional=self.current in self.optional or None)
        return [self._publish("field_requested", count=0, dots=""), started] if again \
            else [started]

    def digit(self, key: str, at: float) -> list[c.Command]:
        if self.outcome:
            return []
        first = self.collector.count == 0
        if first and key == "#":
            return []  # a "#" after a fixed-length field that already ended by itself
        if key == "*" and not self._typed:
            previous = self._previous()
            if previous is not None:
                return self.control(previous.value, "rerequest")
        self._typed = True
        result = self.collector.feed(key, at)
        commands: list[c.Command] = []
        if first and result.outcome is Outcome.PROGRESS:
            commands += [c.StopPlayback(playback_id=pid) for pid in self.prompts]
            self.prompts.clear()
        return commands + self._result(result)

    def timer(self, name: str) -> list[c.Command]:
        if self.outcome or name != TIMER:
            return []
        return self._result(self.collector.expire())

    def _result(self, result: Result) -> list[c.Command]:
        if result.outcome in (Outcome.PROGRESS, Outcome.RESTARTED):
            brand = None
            if self.kind is FieldKind.CARD_NUMBER and result.count >= IIN_DIGITS:
                if result.count == IIN_DIGITS or self._brand is None:
                    self._brand = self._brand_so_far()  # the IIN is complete: once per entry
                brand = self._brand
            return [c.StartTimer(name=TIMER, seconds=self.collector.timeout),
                    self._publish("digit", count=result.count, dots=MASK_CHAR * result.count,
                                  brand=brand)]
        if result.outcome is Outcome.COMPLETE:
            return self._complete(result.digits)
        if result.outcome is Outcome.TIMEOUT:
            return self._failed_attempt("timeout")
        return []

    def _brand_so_far(self) -> str | None:
        # The collector holds the digits; the brand needs the IIN (first 6), nothing more.
        brand = card_brand(self.collector.peek_prefix(IIN_DIGITS))
        return brand.value if brand else None

    def _complete(self, entered: SensitiveDigits) -> list[c.Command]:
        """``entered`` is the collector's holder, now this entry's (kept or wiped here)."""
        validation = spec_for(self.kind, self.context).validate(entered, self.context)
        if not validation.ok:
            length = len(entered)
            entered.wipe()
            return self._failed_attempt(validation.reason_id or "invalid", length=length)
        if self.o.confirm_twice and self.kind in CONFIRMABLE:
            if self._first_entry is None:
                self._first_entry = entered
                return [c.CancelTimer(name=TIMER), *self._prompt()]
            same = self._first_entry.same_as(entered)
            self._first_entry.wipe()
            self._first_entry = None
            if not same:
                length = len(entered)
                entered.wipe()
                return self._failed_attempt("confirm_mismatch", length=length)
        masked = mask_result(self.kind, entered, validation, country=self.context.iban_country)
        self.values[self.kind.value] = entered
        self.masked[self.kind.value] = masked
        if self.kind is FieldKind.CARD_NUMBER:
            self.context = self.context.with_card_brand(validation.brand)
        done = self._publish("field_done", valid=True, count=masked.length, brand=masked.brand,
                             last_digits=masked.last_digits or None)
        return [c.CancelTimer(name=TIMER), done, *self._next_field()]

    def _next_field(self) -> list[c.Command]:
        self.attempt = 1
        if not self.pending:
            self.outcome = "captured" if self.masked else "cancelled"
            self.reason = "" if self.masked else "fields_cancelled"
            return []
        self.current = self.pending.pop(0)
        return [*self._requested(), *self._prompt()]

    def _previous(self) -> FieldKind | None:
        """The field asked before the current one (in request order) that has a value."""
        done = [f for f in self.fields if f.value in self.masked and f is not self.current]
        before = [f for f in done if self.fields.index(f) < self.fields.index(self.current)]
        candidates = before or done
        return candidates[-1] if candidates else None

    # -- field-level control ---------------------------------------------------------------
    def control(self, field: str, action: str) -> list[c.Command]:
        """``rerequest`` | ``cancel`` | ``skip`` one field (see the module docstring). Returns
        ``[]`` for a field not in this capture or an action that does not apply."""
        kind = FieldKind(field) if field in {f.value for f in self.fields} else None
        if self.outcome or kind is None or (action == "skip" and kind not in self.optional):
            return []
        if action == "rerequest":
            return self._rerequest(kind)
        if action in ("cancel", "skip") and kind.value not in self.dropped:
            return self._drop(kind, "cancelled" if action == "cancel" else "skipped")
        return []

    def _discard(self, kind: FieldKind) -> None:
        holder = self.values.pop(kind.value, None)
        if holder is not None:
            holder.wipe()
        self.masked.pop(kind.value, None)
        if kind is FieldKind.CARD_NUMBER:
            self.context = self.context.with_card_brand(None)

    def _stop_current(self) -> list[c.Command]:
        self.collector.wipe()
        if self._first_entry is not None:
            self._first_entry.wipe()
            self._first_entry = None
        stops: list[c.Command] = [c.StopPlayback(playback_id=pid) for pid in self.prompts]
        self.prompts.clear()
        return [c.CancelTimer(name=TIMER), *stops]

    def _rerequest(self, kind: FieldKind) -> list[c.Command]:
        self._discard(kind)
        self.dropped.pop(kind.value, None)
        commands = self._stop_current()
        if kind is not self.current:
            if kind in self.pending:
                self.pending.remove(kind)
            if self.current.value not in self.masked and self.current.value not in self.dropped:
                self.pending.insert(0, self.current)
            self.current = kind
        self.attempt = 1
        return [*commands, *self._requested(again=True), *self._prompt()]

    def _drop(self, kind: FieldKind, how: str) -> list[c.Command]:
        self._discard(kind)
        self.dropped[kind.value] = how
        publish = self._publish("field_" + how, kind, valid=False, status=how)
        if kind in self.pending:
            self.pending.remove(kind)
            return [publish]
        if kind is not self.current:
            return [publish]
        return [*self._stop_current(), publish, *self._next_field()]

    def _failed_attempt(self, reason: str, length: int = 0) -> list[c.Command]:
        self.collector.wipe()
        if self._first_entry is not None:  # a failed confirmation starts the field over
            self._first_entry.wipe()
            self._first_entry = None
        publish = self._publish("field_invalid", valid=False, reason_id=reason, count=length)
        if self.attempt >= self.o.max_attempts:
            self.outcome = "timeout" if reason == "timeout" else "invalid"
            self.reason = reason
            return [c.CancelTimer(name=TIMER), publish]
        self.attempt += 1
        again = error_prompt(reason)
        if reason == "timeout":
            return [publish, *self._prompt()]
        return [publish, *self._prompt(again)]

    def masked_summary(self) -> tuple[tuple[str, tuple[tuple[str, object], ...]], ...]:
        """Per field in request order: length, valid, brand, last 4, country; a dropped field
        ``{"valid": False, "status": "cancelled" | "skipped"}``."""
        out: list[tuple[str, tuple[tuple[str, object], ...]]] = []
        for field in self.fields:
            kind, result = field.value, self.masked.get(field.value)
            if kind in self.dropped:
                out.append((kind, (("valid", False), ("status", self.dropped[kind]))))
            if result is None:
                continue
            summary: dict[str, object] = {"length": result.length, "valid": result.valid}
            if result.brand:
                summary["brand"] = result.brand
            if result.last_digits:
                summary["last4"] = result.last_digits
            if result.country:
                summary["country"] = result.country
            out.append((kind, tuple(summary.items())))
        return tuple(out)

    def wipe(self) -> None:
        self.collector.wipe()
        if self._first_entry is not None:
            self._first_entry.wipe()
        for holder in self.values.values():
            holder.wipe()
        self.values.clear()
