"""The verification flow as a pure state machine: events in, commands out."""

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from callsec_ari.core import commands as c
from callsec_ari.core.events import (
    CallerHungUp,
    CallStarted,
    CommandFailed,
    DtmfReceived,
    PlaybackFinished,
    TimerExpired,
)
from callsec_ari.verification import protocol as p
from callsec_ari.verification.flow import V, VerificationFlow
from callsec_ari.verification.options import VerificationOptions

CODE = "482913"
CUSTOMER = p.CustomerView(ref="C-TEST", has_mobile=True, has_email=True, mobile_tail="78",
                          preferred_method="sms")


def make(**overrides: object) -> VerificationFlow:
    return VerificationFlow("call-1", VerificationOptions(**overrides),  # type: ignore[arg-type]
                            new_code=lambda n: CODE[:n])


def start(flow: VerificationFlow, caller: str = "+4915112345678", **kw: object) -> list[c.Command]:
    return flow.handle(CallStarted(flow="verify", caller_number=caller, at=0.0, **kw))  # type: ignore[arg-type]


def type_keys(flow: VerificationFlow, keys: str, at: float = 10.0,
              locked: bool = False) -> list[c.Command]:
    """Keys typed; every code check the flow counts is answered as the service would
    (``locked``: over a limit or locked out)."""
    out: list[c.Command] = []
    for i, key in enumerate(keys):
        step = flow.handle(DtmfReceived(digit=key, at=at + i * 0.2))
        out += step
        if of(p.CountCheck, step) and not flow.done:
            out += flow.handle(p.CheckCounted(locked=locked, at=at + i * 0.2))
    return out


def of(kind: type, commands: Iterable[c.Command]) -> list:  # type: ignore[type-arg]
    return [x for x in commands if isinstance(x, kind)]


def variables(commands: Iterable[c.Command]) -> dict[str, str]:
    found = of(c.SetVariables, commands)
    assert found, "no SetVariables"
    return dict(found[-1].values)


def to_collecting(flow: VerificationFlow) -> list[c.Command]:
    out = start(flow)
    out += flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    out += flow.handle(p.CodeDelivered(method="sms", at=2.0))
    return out


def finish_prompt(flow: VerificationFlow, commands: list[c.Command]) -> list[c.Command]:
    final = of(c.Play, commands)[-1]
    return flow.handle(PlaybackFinished(playback_id=final.playback_id))


def test_every_prompt_is_made_of_sounds_asterisk_can_stop() -> None:
    """Asterisk refuses to stop a playback while it says ``digits:``/``number:``/
    ``characters:`` (not controllable): a caller's first key must be able to cut any prompt."""
    flow = make()
    out = to_collecting(flow) + type_keys(flow, "1#")
    plays = of(c.Play, out)
    assert len(plays) >= 3
    assert all(m.startswith("sound:") for play in plays for m in play.media)


def test_happy_path_by_sms_sets_verified_and_continues() -> None:
    flow = make()
    out = to_collecting(flow)
    lookup = of(p.LookupCustomer, out)[0]
    assert lookup.by == "caller_id"
    deliver = of(p.DeliverCode, out)[0]
    assert deliver.method == "sms" and deliver.code == CODE and not deliver.resend
    prompt = of(c.Play, out)[-1]
    assert prompt.media == ("sound:callsec/code-sent-sms", "sound:digits/7", "sound:digits/8",
                            "sound:callsec/enter-code")
    out = type_keys(flow, CODE + "#")
    assert variables(out) == {"CALLSEC_RESULT": "verified", "CALLSEC_METHOD": "sms",
                              "CALLSEC_CUSTOMER": "C-TEST"}
    record = of(p.RecordVerification, out)[0]
    assert record.result == "verified" and record.caller_id_matched
    done = finish_prompt(flow, out)
    assert [type(x) for x in done] == [c.ContinueDialplan, c.Finish]


def test_code_never_appears_in_any_repr_of_commands() -> None:
    flow = make()
    out = to_collecting(flow) + type_keys(flow, CODE + "#")
    assert CODE not in repr(out)
    assert "+4915112345678" not in repr(out)


def test_five_wrong_codes_lock_and_no_sixth_check() -> None:
    flow = make()
    to_collecting(flow)
    for attempt in range(1, 5):
        out = type_keys(flow, "000000#", at=10.0 * attempt)
        assert of(c.Play, out)[0].media[0] == "sound:callsec/code-wrong"
    out = type_keys(flow, "000000#", at=60.0)
    assert variables(out)["CALLSEC_RESULT"] == "locked"


def test_every_wrong_code_is_counted_when_checked_even_if_the_caller_hangs_up() -> None:
    flow = make()
    to_collecting(flow)
    counted = []
    for attempt in range(1, 5):
        out = type_keys(flow, "000000#", at=10.0 * attempt)
        counted += of(p.CountCheck, out)
        # the caller hears "wrong code" first; the count follows it, not the other way round
        assert out.index(of(c.Play, out)[0]) < out.index(of(p.CountCheck, out)[0])
    out = flow.handle(CallerHungUp(at=50.0))
    assert variables(out)["CALLSEC_RESULT"] == "hangup"
    assert [(x.customer_ref, x.wrong) for x in counted] == [("C-TEST", True)] * 4
    assert all(x.caller_number == "+4915112345678" for x in counted)


def test_the_last_wrong_code_is_counted_too() -> None:
    flow = make(max_checks=1)
    to_collecting(flow)
    out = flow.handle(DtmfReceived(digit="0", at=10.0))
    out = type_keys(flow, "00000#", at=10.2)
    assert of(p.CountCheck, out)[0].wrong and variables(out)["CALLSEC_RESULT"] == "locked"


def test_a_right_code_waits_for_its_count_and_is_refused_over_a_limit() -> None:
    flow = make()
    to_collecting(flow)
    out: list[c.Command] = []
    for i, key in enumerate(CODE + "#"):
        out += flow.handle(DtmfReceived(digit=key, at=10.0 + i * 0.2))
    count = of(p.CountCheck, out)
    assert count and not count[0].wrong and flow.state is V.CHECK_CODE
    assert not of(c.SetVariables, out)  # no result before the count
    out = flow.handle(p.CheckCounted(locked=True, at=12.0))
    assert variables(out)["CALLSEC_RESULT"] == "locked"


def test_a_lockout_reached_by_a_wrong_code_ends_the_call_locked() -> None:
    flow = make()
    to_collecting(flow)
    out = type_keys(flow, "000000#", locked=True)
    assert variables(out)["CALLSEC_RESULT"] == "locked"


def test_a_locked_answer_to_a_totp_check_ends_the_call_locked() -> None:
    flow = make()
    start(flow)
    flow.handle(p.CustomerResult(customer=p.CustomerView(ref="C-T", has_totp=True), at=1.0))
    out = type_keys(flow, "123456#")
    check = of(p.CheckTotp, out)[0]
    assert check.caller_number == "+4915112345678"
    out = flow.handle(p.TotpChecked(ok=False, locked=True, at=12.0))
    assert variables(out)["CALLSEC_RESULT"] == "locked"


def test_code_sends_carry_the_presented_number_for_its_send_limit() -> None:
    flow = make()
    out = to_collecting(flow)
    assert of(p.DeliverCode, out)[0].caller_number == "+4915112345678"


def test_expired_code_is_refused_and_a_new_one_sent() -> None:
    flow = make(code_ttl=600)
    to_collecting(flow)
    out = type_keys(flow, CODE + "#", at=700.0)
    assert "sound:callsec/code-expired" in of(c.Play, out)[0].media
    deliver = of(p.DeliverCode, out)[0]
    assert deliver.resend and flow.state is V.SENDING


def test_star_resends_the_same_code() -> None:
    flow = make()
    to_collecting(flow)
    out = type_keys(flow, "*")
    deliver = of(p.DeliverCode, out)[0]
    assert deliver.resend and deliver.code == CODE
    out = flow.handle(p.CodeDelivered(method="sms", at=12.0))
    assert of(c.Play, out)[0].media[0] == "sound:callsec/code-resent"


def test_unknown_caller_enters_customer_number_then_verifies() -> None:
    flow = make()
    start(flow)
    out = flow.handle(p.CustomerResult(customer=None, at=1.0))
    assert "sound:callsec/enter-customer-number" in of(c.Play, out)[0].media
    out = type_keys(flow, "12345678#")
    assert of(p.LookupCustomer, out)[0].by == "customer_number"
    out = flow.handle(p.CustomerResult(customer=CUSTOMER, at=20.0))
    assert of(p.DeliverCode, out)
    flow.handle(p.CodeDelivered(method="sms", at=21.0))
    out = type_keys(flow, CODE + "#", at=30.0)
    assert variables(out)["CALLSEC_RESULT"] == "verified"
    assert not of(p.RecordVerification, out)[0].caller_id_matched


def test_unknown_customer_number_three_times_is_unknown_caller() -> None:
    flow = make(customer_number_tries=3)
    start(flow)
    flow.handle(p.CustomerResult(customer=None, at=1.0))
    out: list[c.Command] = []
    for i in range(3):
        type_keys(flow, "99999#", at=10.0 * (i + 1))
        out = flow.handle(p.CustomerResult(customer=None, at=10.0 * (i + 1) + 2))
    assert variables(out)["CALLSEC_RESULT"] == "unknown_caller"


def test_delivery_failure_is_delivery_failed_with_spoken_fallback() -> None:
    flow = make()
    start(flow)
    flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    out = flow.handle(p.CodeDeliveryFailed(method="sms", reason="timeout", at=6.0))
    assert variables(out)["CALLSEC_RESULT"] == "delivery_failed"
    assert "sound:callsec/delivery-failed" in of(c.Play, out)[-1].media


def test_totp_customer_is_asked_for_app_code_and_nothing_is_sent() -> None:
    flow = make()
    start(flow)
    totp = p.CustomerView(ref="C-T", has_totp=True, preferred_method="totp")
    out = flow.handle(p.CustomerResult(customer=totp, at=1.0))
    assert not of(p.DeliverCode, out)
    assert "sound:callsec/enter-totp" in of(c.Play, out)[0].media
    out = type_keys(flow, "123456#")
    assert of(p.CheckTotp, out)[0].customer_ref == "C-T"
    out = flow.handle(p.TotpChecked(ok=True, at=20.0))
    assert variables(out) == {"CALLSEC_RESULT": "verified", "CALLSEC_METHOD": "totp",
                              "CALLSEC_CUSTOMER": "C-T"}


def test_locked_customer_is_locked_without_a_code() -> None:
    flow = make()
    start(flow)
    out = flow.handle(p.CustomerResult(customer=CUSTOMER.__class__(ref="C-L", has_mobile=True,
                                                                   locked=True), at=1.0))
    assert variables(out)["CALLSEC_RESULT"] == "locked" and not of(p.DeliverCode, out)


def test_customer_without_contact_is_no_contact() -> None:
    flow = make()
    start(flow)
    out = flow.handle(p.CustomerResult(customer=p.CustomerView(ref="C-N"), at=1.0))
    assert variables(out)["CALLSEC_RESULT"] == "no_contact"


def test_risk_policy_skips_code_for_trusted_attestation_and_matching_caller_id() -> None:
    flow = make(require_code="risk")
    start(flow, attestation="A")
    out = flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    assert variables(out)["CALLSEC_RESULT"] == "skipped"
    assert variables(out)["CALLSEC_METHOD"] == "none"


def test_risk_policy_still_asks_when_attestation_is_weak() -> None:
    flow = make(require_code="risk")
    start(flow, attestation="C")
    out = flow.handle(p.CustomerResult(customer=CUSTOMER, at=1.0))
    assert of(p.DeliverCode, out)


def test_hangup_mid_flow_records_hangup_and_cancels_timer() -> None:
    flow = make()
    to_collecting(flow)
    type_keys(flow, "12")
    out = flow.handle(CallerHungUp(at=15.0))
    assert of(p.RecordVerification, out)[0].result == "hangup"
    assert c.CancelTimer(name="entry") in out
    assert not of(c.ContinueDialplan, out)
    assert flow.done


def test_two_silent_timeouts_end_with_timeout() -> None:
    flow = make()
    to_collecting(flow)
    out = flow.handle(TimerExpired(name="entry", at=20.0))
    assert "sound:callsec/enter-code" in of(c.Play, out)[0].media
    out = flow.handle(TimerExpired(name="entry", at=40.0))
    assert variables(out)["CALLSEC_RESULT"] == "timeout"


def test_database_down_during_lookup_fails_with_a_prompt() -> None:
    flow = make()
    start(flow)
    out = flow.handle(CommandFailed(command=p.LookupCustomer, error_id="unavailable"))
    assert variables(out)["CALLSEC_RESULT"] == "failed"
    assert of(c.Play, out)


def test_first_digit_stops_the_prompt() -> None:
    flow = make()
    out = to_collecting(flow)
    prompt = of(c.Play, out)[-1]
    out = type_keys(flow, "4")
    assert c.StopPlayback(playback_id=prompt.playback_id) in out


def test_policy_never_skips() -> None:
    flow = make(require_code="never")
    out = start(flow)
    assert variables(out)["CALLSEC_RESULT"] == "skipped"
    assert of(c.ContinueDialplan, out)


def test_customer_language_is_used_unless_lang_option_given() -> None:
    flow = make()
    start(flow)
    de = p.CustomerView(ref="C-DE", has_mobile=True, mobile_tail="12", language="de")
    flow.handle(p.CustomerResult(customer=de, at=1.0))
    out = flow.handle(p.CodeDelivered(method="sms", at=2.0))
    assert of(c.Play, out)[0].language == "de"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("key"), st.sampled_from("0123456789*#")),
    st.tuples(st.just("timer"), st.just("")),
    st.tuples(st.just("delivered"), st.just("")),
), max_size=80), st.booleans())
def test_any_key_and_timer_sequence_ends_in_a_defined_state(steps, hang_up: bool) -> None:  # type: ignore[no-untyped-def]
    flow = make()
    to_collecting(flow)
    t = 10.0
    for kind, key in steps:
        t += 0.3
        if kind == "key":
            flow.handle(DtmfReceived(digit=key, at=t))
        elif kind == "timer":
            flow.handle(TimerExpired(name="entry", at=t))
        elif flow.state is V.SENDING:
            flow.handle(p.CodeDelivered(method="sms", at=t))
        if flow.state is V.FAREWELL:
            break
    if hang_up or flow.state is not V.FAREWELL:
        flow.handle(CallerHungUp(at=t + 1))
    else:
        flow.handle(PlaybackFinished(playback_id=flow._final_id))
    assert flow.done
    assert flow.result in {"verified", "failed", "locked", "timeout", "hangup", "delivery_failed"}
