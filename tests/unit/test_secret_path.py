"""One path for secrets (#15.3): keyed digits go from the collector into a wipeable holder and
stay there; the entry keeps that very holder (no copy), masks read its tail, and the sink that
stores them zeroes it."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from callsec_ari.capture.entry import EntryOptions, FieldEntry
from callsec_ari.capture.fields import ValidationContext
from callsec_ari.capture.sinks import CaptureValues, VaultSink
from callsec_ari.core.digits import CollectorSpec, DigitCollector, Outcome, SensitiveDigits

PAN, EXPIRY = "4111111111111111", "1230"
CTX = ValidationContext(year=2026, month=11)


def test_a_completed_entry_carries_its_digits_in_a_holder_and_no_str_of_them() -> None:
    collector = DigitCollector(CollectorSpec(max_digits=19))
    results = [collector.feed(key, at=i * 1.0) for i, key in enumerate(PAN + "#")]
    done = results[-1]
    assert done.outcome is Outcome.COMPLETE and isinstance(done.digits, SensitiveDigits)
    for result in results:
        for f in fields(result):
            value = getattr(result, f.name)
            assert not (isinstance(value, str | bytes) and PAN[-4:] in str(value)), f.name
        assert PAN[-4:] not in repr(result)
    assert done.digits.same_as(_holder(PAN))
    assert collector.count == 0  # the collector kept nothing: the holder is the receiver's


def test_the_entry_keeps_the_collectors_holder_and_masks_from_its_tail() -> None:
    entry = FieldEntry("CP-1", ("card_number", "expiry"), CTX, EntryOptions())
    entry.start()
    handed: list[SensitiveDigits] = []
    original = DigitCollector._complete

    def spy(self: DigitCollector) -> Any:
        result = original(self)
        handed.append(result.digits)
        return result

    DigitCollector._complete = spy  # type: ignore[method-assign]
    try:
        for i, key in enumerate(PAN + "#" + EXPIRY):
            entry.digit(key, at=i * 1.0)
    finally:
        DigitCollector._complete = original  # type: ignore[method-assign]
    assert entry.outcome == "captured"
    assert [entry.values["card_number"], entry.values["expiry"]] == handed  # same objects
    assert entry.masked["card_number"].last_digits == PAN[-4:]


class FakeVault:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def put(self, kind: str, value: str, **_: object) -> str:
        self.items.append((kind, value))
        return f"V-{len(self.items)}"


def test_after_the_vault_sink_stored_a_capture_every_holder_is_zeroed() -> None:
    holders = (("card_number", _holder(PAN)), ("expiry", _holder(EXPIRY)),
               ("cvv", _holder("123")))
    vault = FakeVault()
    sink = VaultSink(vault, "DE")  # type: ignore[arg-type]
    result = sink.store_sync(CaptureValues(capture_id="CP-1", call_id="k1", customer_ref=None,
                                           values=holders))
    assert vault.items == [("card_number", PAN), ("expiry", EXPIRY)]  # the CVV is dropped
    assert sorted(result.vault_refs) == ["card_number", "expiry"]
    for _kind, holder in holders:
        assert holder.wiped and not any(holder._buffer)


def _holder(digits: str) -> SensitiveDigits:
    holder = SensitiveDigits(len(digits))
    for digit in digits:
        holder.append(digit)
    return holder
