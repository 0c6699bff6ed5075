"""Which masked progress becomes which webhook event, and that nothing else passes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from callsec_ari.core.commands import Publish
from callsec_ari.core.events import Event
from callsec_ari.webhooks.tap import event_for, tapped

PAN = "4539578763621486"


def test_verification_finished_keeps_result_method_and_reason_only() -> None:
    assert event_for("verification", {"stage": "finished", "result": "verified",
                                      "method": "sms", "customer": "C-ABCDEFGH12"}) == (
        "verification.finished", {"result": "verified", "method": "sms"})
    assert event_for("verification", {"stage": "code_sent", "method": "sms"}) is None


def test_capture_stages_map_to_events_and_unknown_keys_are_dropped() -> None:
    done = event_for("capture", {"stage": "field_done", "capture_id": "CP-1", "field":
                                 "card_number", "valid": True, "count": 16, "brand": "visa",
                                 "last_digits": "1486", "digits": PAN, "dots": "••••"})
    assert done == ("capture.field_completed", {
        "capture_id": "CP-1", "field": "card_number", "valid": True, "length": 16,
        "brand": "visa", "last_digits": "1486"})
    assert event_for("capture", {"stage": "started", "capture_id": "CP-1"}) == (
        "capture.started", {"capture_id": "CP-1"})
    cancelled = event_for("capture", {"stage": "finished", "capture_id": "CP-1",
                                      "result": "cancelled", "reason": "agent"})
    assert cancelled is not None and cancelled[0] == "capture.cancelled"
    finished = event_for("capture", {"stage": "finished", "capture_id": "CP-1",
                                     "result": "captured", "last4": "1486",
                                     "fields_valid": "card_number,expiry", "value": PAN})
    assert finished == ("capture.finished", {"capture_id": "CP-1", "result": "captured",
                                             "last_digits": "1486",
                                             "fields_valid": "card_number,expiry"})
    assert event_for("capture", {"stage": "digit", "count": 3, "dots": "•••"}) is None
    assert event_for("capture", {"stage": "failed", "capture_id": "CP-2", "reason": "x"}) == (
        "capture.cancelled", {"capture_id": "CP-2", "reason": "x", "result": "cancelled"})


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, object]]] = []

    def emit(self, event_type: str, call_id: str, payload: Mapping[str, object]) -> None:
        self.events.append((event_type, call_id, dict(payload)))


async def test_tapped_handler_emits_then_runs_the_bus_handler() -> None:
    calls: list[str] = []

    async def bus(call: object, command: Publish) -> Sequence[Event]:
        calls.append(command.topic)
        return ()

    class Call:
        call_id = "1733.9"

    recorder = Recorder()
    handle = tapped(bus, recorder)
    await handle(Call(), Publish(topic="capture", payload=(  # type: ignore[arg-type]
        ("stage", "started"), ("capture_id", "CP-3"))))
    await handle(Call(), Publish(topic="call", payload=(("stage", "connected"),)))  # type: ignore[arg-type]
    assert recorder.events == [("capture.started", "1733.9", {"capture_id": "CP-3"})]
    assert calls == ["capture", "call"]
