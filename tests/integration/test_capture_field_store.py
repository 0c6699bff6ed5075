"""A capture with a dropped field (issue #18) is stored: the flow's StoreCapture reaches the
real capture service and vault; the stored summary marks the field ``cancelled`` (the masked
record took no such key before) and the vault holds one item per stored field."""

from __future__ import annotations

from callsec_ari.capture import protocol as cp
from callsec_ari.store.context import Store
from tests.integration.test_capture_service import feature, handle, store
from tests.unit.test_capture_steering import EXPIRY, PAN, connected, keys, of

__all__ = ["store"]


async def test_a_capture_whose_cvv_was_cancelled_is_stored_with_the_field_marked(
        store: Store) -> None:
    flow = connected()
    flow.handle(cp.CaptureRequested(capture_id="CP-00000000000000dd",
                                    fields=("card_number", "expiry", "cvv")))
    flow.handle(cp.RecordingMuted(mute=True))
    keys(flow, PAN + "#")
    flow.handle(cp.FieldControl(capture_id="CP-00000000000000dd", field="cvv", action="cancel"))
    command = of(cp.StoreCapture, keys(flow, EXPIRY, at=20.0))[0]
    await feature(store).store_capture(handle(), command)
    info = await feature(store).get("CP-00000000000000dd")
    assert info.state == "captured"
    assert info.masked["fields"]["cvv"] == {"valid": False, "status": "cancelled"}
    assert info.masked["fields"]["card_number"]["last4"] == PAN[-4:]
    assert sorted(info.masked["vault_refs"]) == ["card_number", "expiry"]


async def test_a_reopened_capture_replaces_the_fields_vault_item_and_keeps_one_record(
        store: Store) -> None:
    from sqlalchemy import select

    from callsec_ari.store.models import CaptureRow, VaultItemRow
    from tests.unit.test_capture_steering import CVV

    service, call_id, capture_id = feature(store), "call-1", "CP-00000000000000ee"
    flow = connected()
    flow.handle(cp.CaptureRequested(capture_id=capture_id, fields=("card_number", "expiry",
                                                                   "cvv")))
    flow.handle(cp.RecordingMuted(mute=True))
    keys(flow, PAN + "#")
    keys(flow, "0131", at=20.0)  # a wrong (but valid) expiry
    await service.store_capture(handle(), of(cp.StoreCapture, keys(flow, CVV, at=30.0))[0])
    first = (await service.get(capture_id)).masked["vault_refs"]
    flow.handle(cp.CaptureStored(capture_id=capture_id))
    flow.handle(cp.FieldControl(capture_id=capture_id, field="expiry", action="rerequest"))
    flow.handle(cp.RecordingMuted(mute=True))
    again = of(cp.StoreCapture, keys(flow, EXPIRY, at=40.0))[0]
    await service.store_capture(handle(), again)
    info = await service.get(capture_id)
    assert info.state == "captured"
    refs = info.masked["vault_refs"]
    assert refs["card_number"] == first["card_number"] and refs["expiry"] != first["expiry"]
    assert sorted(info.masked["fields"]) == ["card_number", "cvv", "expiry"]
    with store.db.session() as s:
        assert s.scalars(select(CaptureRow.capture_id).where(
            CaptureRow.call_id == call_id)).all() == [capture_id]
        vault = dict(s.execute(select(VaultItemRow.ref, VaultItemRow.kind)).all())
    assert vault == {refs["card_number"]: "card_number", refs["expiry"]: "expiry"}
    clear = await service.reveal(capture_id, kinds=frozenset({"expiry"}), actor="user:sven",
                                 reason="check the corrected expiry")
    assert clear == {"expiry": EXPIRY}
    actions = [e.action for e in store.audit.tail()]
    assert "capture.field_replaced" in actions


def test_only_a_vault_capture_that_finished_stored_is_reopened_for_a_rerequest() -> None:
    import pytest

    from callsec_ari.capture.errors import CaptureNotFound
    from callsec_ari.capture.reopen import CaptureNotReopenable, check_control
    from callsec_ari.core.errors import InvalidInput
    from tests.unit.test_capture_steering import CVV

    flow = connected()
    flow.handle(cp.CaptureRequested(capture_id="CP-1", fields=("card_number", "expiry", "cvv")))
    flow.handle(cp.RecordingMuted(mute=True))
    keys(flow, PAN + "#")
    keys(flow, EXPIRY, at=20.0)
    keys(flow, CVV, at=30.0)
    flow.handle(cp.CaptureStored(capture_id="CP-1"))
    call = handle(flow)
    check_control(call, None, "CP-1", "expiry", "rerequest", "vault")  # re-opened
    with pytest.raises(CaptureNotReopenable) as refused:
        check_control(call, None, "CP-1", "expiry", "rerequest", "gateway")
    assert refused.value.status == 409
    with pytest.raises(CaptureNotFound):
        check_control(call, None, "CP-1", "expiry", "cancel", "vault")
    with pytest.raises(InvalidInput):
        check_control(call, None, "CP-1", "iban", "rerequest", "vault")
