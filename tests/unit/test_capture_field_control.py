"""Field-level control of a running capture (issue #18): re-request, cancel and skip one
field, from the desk/API (``FieldControl``) and the caller's keypad (``*`` first). Pure."""

from callsec_ari.capture import protocol as cp
from callsec_ari.connect.flow import ConnectFlow
from callsec_ari.core import commands as c
from tests.unit.test_capture_steering import CVV, EXPIRY, PAN, connected, keys, of

WRONG_EXPIRY = "0131"  # valid format and in the future: the caller misspoke, not the validator


def stages(out: list[c.Command]) -> list[tuple[str, str]]:
    pubs = [dict(p.payload) for p in of(c.Publish, out)]
    return [(str(p["stage"]), str(p.get("field", ""))) for p in pubs]


def running(fields: tuple[str, ...] = ("card_number", "expiry", "cvv"),
            optional: tuple[str, ...] = ()) -> tuple[ConnectFlow, list[c.Command]]:
    flow = connected()
    flow.handle(cp.CaptureRequested(capture_id="CP-1", fields=fields, optional=optional))
    return flow, flow.handle(cp.RecordingMuted(mute=True))


def control(flow: ConnectFlow, field: str, action: str) -> list[c.Command]:
    return flow.handle(cp.FieldControl(capture_id="CP-1", field=field,
                                       action=action))


def test_agent_rerequests_expiry_while_cvv_is_asked_and_one_capture_is_stored() -> None:
    flow, _ = running()
    keys(flow, PAN + "#")
    keys(flow, WRONG_EXPIRY, at=20.0)
    out = control(flow, "expiry", "rerequest")
    assert ("field_requested", "expiry") in stages(out)
    assert ("field_started", "expiry") in stages(out)
    prompt = [p for p in of(c.Play, out) if p.leg == "caller"][-1]
    assert prompt.media == ("sound:callsec/enter-expiry",)
    out = keys(flow, EXPIRY, at=30.0)
    assert ("field_started", "cvv") in stages(out)  # back to the field it interrupted
    out = keys(flow, CVV, at=40.0)
    stores = of(cp.StoreCapture, out)
    assert len(stores) == 1
    values = dict(stores[0].values)
    assert values["expiry"].reveal() == EXPIRY and values["cvv"].reveal() == CVV
    finished = flow.handle(cp.CaptureStored(capture_id="CP-1"))
    summary = [dict(p.payload) for p in of(c.Publish, finished)][-1]
    assert summary["stage"] == "finished" and summary["result"] == "captured"
    assert summary["fields_valid"] == "card_number,expiry,cvv"
    assert summary["last4"] == "1111" and summary["brand"] == "visa"


def test_rerequest_of_a_field_done_earlier_in_any_order() -> None:
    flow, _ = running()
    keys(flow, PAN + "#")
    keys(flow, EXPIRY, at=20.0)
    out = control(flow, "card_number", "rerequest")
    assert ("field_started", "card_number") in stages(out)
    keys(flow, "5555555555554444#", at=30.0)
    out = keys(flow, CVV, at=40.0)
    masked = dict(of(cp.StoreCapture, out)[0].masked)
    assert dict(masked["card_number"])["last4"] == "4444"
    assert dict(masked["expiry"])["valid"] is True


def test_star_as_first_key_rerequests_the_previous_field() -> None:
    flow, _ = running()
    keys(flow, PAN + "#")
    keys(flow, WRONG_EXPIRY, at=20.0)
    out = keys(flow, "*", at=30.0)  # cvv prompt playing, nothing typed: back to expiry
    assert ("field_requested", "expiry") in stages(out)
    out = keys(flow, "12*", at=31.0)  # a later "*" only clears the entry
    assert not any(s == "field_requested" for s, _ in stages(out))
    out = keys(flow, EXPIRY, at=33.0) + keys(flow, CVV, at=40.0)
    values = dict(of(cp.StoreCapture, out)[0].values)
    assert values["expiry"].reveal() == EXPIRY


def test_invalid_entry_names_field_and_reason() -> None:
    flow, _ = running()
    keys(flow, PAN + "#")
    out = keys(flow, "0120", at=20.0)  # expired
    bad = [dict(p.payload) for p in of(c.Publish, out) if dict(p.payload)["stage"] ==
           "field_invalid"][0]
    assert bad["field"] == "expiry" and bad["valid"] is False and bad["reason_id"] == "expired"
    assert "0120" not in repr(out)


def test_cancel_one_field_stores_the_others_and_marks_it_cancelled() -> None:
    flow, _ = running()
    keys(flow, PAN + "#")
    out = control(flow, "cvv", "cancel")  # pending: dropped, the expiry is still asked
    assert ("field_cancelled", "cvv") in stages(out)
    out = keys(flow, EXPIRY, at=20.0)
    store = of(cp.StoreCapture, out)[0]
    assert sorted(dict(store.values)) == ["card_number", "expiry"]
    assert dict(dict(store.masked)["cvv"]) == {"valid": False, "status": "cancelled"}


def test_skip_only_an_optional_field_and_the_current_one_moves_on() -> None:
    flow, _ = running(optional=("cvv",))
    assert ("field_control_refused", "expiry") in stages(control(flow, "expiry", "skip"))
    keys(flow, PAN + "#")
    keys(flow, EXPIRY, at=20.0)
    out = control(flow, "cvv", "skip")  # the field being asked
    assert ("field_skipped", "cvv") in stages(out)
    store = of(cp.StoreCapture, out)[0]
    assert dict(dict(store.masked)["cvv"]) == {"valid": False, "status": "skipped"}


def test_cancelling_every_field_ends_the_capture_cancelled() -> None:
    flow, _ = running(fields=("iban",))
    out = control(flow, "iban", "cancel")
    assert not of(cp.StoreCapture, out)
    finished = [dict(p.payload) for p in of(c.Publish, out) if dict(p.payload)["stage"] ==
                "finished"][0]
    assert finished["result"] == "cancelled" and finished["fields_cancelled"] == "iban"
    assert of(cp.RecordCapture, out)[0].result == "cancelled"


def test_control_of_an_unknown_capture_or_field_changes_nothing() -> None:
    flow, _ = running()
    assert flow.handle(cp.FieldControl(
        capture_id="CP-other", field="expiry", action="rerequest")) == []
    assert ("field_control_refused", "iban") in stages(control(flow, "iban", "rerequest"))


def finished_capture() -> ConnectFlow:
    flow, _ = running()
    keys(flow, PAN + "#")
    keys(flow, WRONG_EXPIRY, at=20.0)
    assert of(cp.StoreCapture, keys(flow, CVV, at=30.0))
    flow.handle(cp.CaptureStored(capture_id="CP-1"))
    assert flow.capture is not None and flow.capture.stage == "done"
    return flow


def test_rerequest_after_the_capture_finished_reopens_it_for_that_field() -> None:
    flow = finished_capture()
    out = control(flow, "expiry", "rerequest")
    assert of(cp.MuteRecording, out) == [cp.MuteRecording(leg="caller", mute=True)]
    out = flow.handle(cp.RecordingMuted(mute=True))  # the caller is steered in again
    assert c.AddToBridge(bridge_id="callsec-capture-k1", leg="caller", absorb_dtmf=True) in out
    assert ("field_requested", "expiry") in stages(out)
    store = of(cp.StoreCapture, keys(flow, EXPIRY, at=40.0))[0]
    assert store.capture_id == "CP-1" and store.replaces == ("expiry",)
    assert store.fields == ("card_number", "expiry", "cvv")
    assert [k for k, _ in store.values] == ["expiry"]  # the others stay stored as they are
    masked = dict(store.masked)
    assert dict(masked["card_number"])["last4"] == PAN[-4:] and "cvv" in masked
    finished = [dict(p.payload) for p in of(c.Publish, flow.handle(
        cp.CaptureStored(capture_id="CP-1"))) if dict(p.payload)["stage"] == "finished"][0]
    assert finished["result"] == "captured" and finished["fields_valid"] == \
        "card_number,expiry,cvv"


def test_a_reopened_capture_cancelled_keeps_the_stored_capture() -> None:
    flow = finished_capture()
    control(flow, "expiry", "rerequest")
    flow.handle(cp.RecordingMuted(mute=True))
    out = flow.handle(cp.CaptureCancelled(capture_id="CP-1", by="api"))
    assert not of(cp.RecordCapture, out) and not of(cp.StoreCapture, out)
    finished = [dict(p.payload) for p in of(c.Publish, out)
                if dict(p.payload)["stage"] == "finished"][0]
    assert finished["result"] == "captured" and finished["reason"] == "rerequest_cancelled"
    assert finished["fields_valid"] == "card_number,expiry,cvv"


def test_only_a_rerequest_of_a_captured_capture_reopens_it() -> None:
    flow = finished_capture()
    assert control(flow, "expiry", "cancel") == []
    assert control(flow, "iban", "rerequest") == []
    flow2, _ = running(fields=("iban",))
    control(flow2, "iban", "cancel")  # ended cancelled: nothing to re-open
    assert control(flow2, "iban", "rerequest") == []
