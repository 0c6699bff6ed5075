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
