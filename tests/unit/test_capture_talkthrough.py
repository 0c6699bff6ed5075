"""Talk-through capture steering inside a connect call (pure): the media path is built before
the caller moves, prompts play into the capture bridge, one digit source per capture (Asterisk's outranks
the relay's), and every
ending gives the caller back before the media is torn down."""

from collections.abc import Iterable
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.entry import EntryOptions
from callsec_ari.capture.fields import ValidationContext
from callsec_ari.capture.steering import CaptureSteering
from callsec_ari.capture.talkthrough import TalkThroughSteering
from callsec_ari.connect.captures import CaptureOptions
from callsec_ari.connect.flow import ConnectFlow, ConnectOptions, K, Recovered
from callsec_ari.core import commands as c
from callsec_ari.core.events import (
    CallerHungUp,
    CallStarted,
    CommandFailed,
    DtmfReceived,
    ExternalMediaReady,
    LegAnswered,
    LegGone,
    PlaybackFinished,
    Resynchronised,
    TimerExpired,
)
from callsec_ari.verification.flow import VerificationFlow
from callsec_ari.verification.options import VerificationOptions

PAN, EXPIRY, CVV = "4111111111111111", "1230", "123"
CTX = ValidationContext(year=2026, month=11)
AGENT_BRIDGE, CAPTURE_BRIDGE = "callsec-call-k1", "callsec-capture-k1"
CARD = ("card_number", "expiry", "cvv")
T = TypeVar("T", bound=c.Command)


def connected(mode: str = "talk_through", fallback: bool = False) -> ConnectFlow:
    verification = VerificationFlow("k1", VerificationOptions(require_code="never",
                                                              continue_after=False))
    flow = ConnectFlow("k1", verification, ConnectOptions(
        dial_string="PJSIP/agent100",
        captures=CaptureOptions(context=CTX, entry=EntryOptions(), new_id=lambda: "CP-KEYPAD",
                                mode=mode, fallback_to_bridge=fallback)))
    flow.handle(CallStarted(flow="connect", caller_number="+4915112345678"))
    flow.handle(LegAnswered(leg="agent"))
    assert flow.state is K.CONNECTED
    return flow


def of(kind: type[T], commands: Iterable[c.Command]) -> list[T]:
    return [x for x in commands if isinstance(x, kind)]


def index(commands: list[c.Command], wanted: c.Command) -> int:
    return commands.index(wanted)


def request(flow: ConnectFlow, fields: tuple[str, ...] = CARD, mode: str = "") -> list[c.Command]:
    out = flow.handle(cp.CaptureRequested(capture_id="CP-1", fields=fields, mode=mode))
    assert of(cp.MuteRecording, out) == [cp.MuteRecording(leg="caller", mute=True)]
    return flow.handle(cp.RecordingMuted(mute=True))


def media_ready(flow: ConnectFlow) -> list[c.Command]:
    out = flow.handle(cp.MediaOpened(capture_id="CP-1", host="127.0.0.1", caller_port=40000,
                                     agent_port=40002))
    out += flow.handle(ExternalMediaReady(leg="media-caller", address="127.0.0.1", port=20010))
    out += flow.handle(ExternalMediaReady(leg="media-agent", address="127.0.0.1", port=20012))
    return out


def entering(flow: ConnectFlow, fields: tuple[str, ...] = CARD) -> list[c.Command]:
    request(flow, fields)
    media_ready(flow)
    out = flow.handle(cp.MediaConnected(capture_id="CP-1"))
    assert flow.capture is not None and flow.capture.stage == "entering"
    return out


def keys(flow: ConnectFlow, digits: str, leg: str = "caller", at: float = 10.0) -> list[c.Command]:
    out: list[c.Command] = []
    for i, key in enumerate(digits):
        out += flow.handle(DtmfReceived(digit=key, leg=leg, at=at + i * 0.2))
    return out


def caller_moves(commands: list[c.Command]) -> list[c.Command]:
    return [x for x in commands if isinstance(x, (c.RemoveFromBridge, c.AddToBridge))
            and x.leg == "caller"]


def teardown_cmds() -> list[c.Command]:
    return [c.HangupLeg(leg="media-caller"), c.HangupLeg(leg="media-agent"),
            cp.CloseMedia(capture_id="CP-1"), c.DestroyBridge(bridge_id=CAPTURE_BRIDGE)]


# -- building the media path ------------------------------------------------------------

def test_media_is_built_before_the_caller_leaves_the_agent() -> None:
    flow = connected()
    out = request(flow)
    assert out == [c.CreateBridge(bridge_id=CAPTURE_BRIDGE, name=CAPTURE_BRIDGE),
                   cp.OpenMedia(capture_id="CP-1")]
    out = flow.handle(cp.MediaOpened(capture_id="CP-1", host="127.0.0.1", caller_port=40000,
                                     agent_port=40002))
    assert out == [c.CreateExternalMedia(leg="media-caller", host="127.0.0.1", port=40000),
                   c.CreateExternalMedia(leg="media-agent", host="127.0.0.1", port=40002)]
    assert flow.handle(ExternalMediaReady(leg="media-agent", address="127.0.0.1",
                                          port=20012)) == []
    out = flow.handle(ExternalMediaReady(leg="media-caller", address="127.0.0.1", port=20010))
    assert out == [
        c.AddToBridge(bridge_id=CAPTURE_BRIDGE, leg="media-caller", absorb_dtmf=True),
        c.AddToBridge(bridge_id=AGENT_BRIDGE, leg="media-agent", absorb_dtmf=True),
        cp.ConnectMedia(capture_id="CP-1", caller=("127.0.0.1", 20010),
                        agent=("127.0.0.1", 20012))]  # last: a failed join comes back first


def test_caller_moves_last_absorbing_dtmf_and_prompts_play_into_the_capture_bridge() -> None:
    flow = connected()
    request(flow)
    media_ready(flow)
    out = flow.handle(cp.MediaConnected(capture_id="CP-1"))
    assert caller_moves(out) == [
        c.RemoveFromBridge(bridge_id=AGENT_BRIDGE, leg="caller"),
        c.AddToBridge(bridge_id=CAPTURE_BRIDGE, leg="caller", absorb_dtmf=True)]
    plays = of(c.Play, out)
    assert [(p.bridge_id, p.media) for p in plays] == [
        (CAPTURE_BRIDGE, ("sound:callsec/enter-card-number",))]
    assert not any(p.leg == "agent" for p in plays)  # no hold loop: the agent hears the caller
    started = [dict(p.payload) for p in of(c.Publish, out)]
    assert {"capture_id": "CP-1", "stage": "started", "mode": "talk_through"} in started
    # a prompt ending starts no loop
    assert flow.handle(PlaybackFinished(playback_id=plays[0].playback_id)) == []


def test_request_mode_overrides_the_configured_one_and_keypad_uses_config() -> None:
    flow = connected(mode="bridge")
    out = request(flow, mode="talk_through")
    assert isinstance(flow.capture, TalkThroughSteering) and of(cp.OpenMedia, out)
    flow = connected(mode="talk_through")
    out = request(flow, mode="bridge")
    assert type(flow.capture) is CaptureSteering and not of(cp.OpenMedia, out)
    flow = connected(mode="talk_through")
    keys(flow, "*1", leg="agent")
    assert isinstance(flow.capture, TalkThroughSteering)


# -- a whole capture -----------------------------------------------------------------------

def test_full_card_capture_stores_then_gives_back_before_tearing_media_down() -> None:
    flow = connected()
    entering(flow)
    out = keys(flow, PAN + "#") + keys(flow, EXPIRY, at=20.0) + keys(flow, CVV, at=30.0)
    store = of(cp.StoreCapture, out)[0]
    assert dict(store.values)["card_number"].reveal() == PAN
    assert all(p.bridge_id == CAPTURE_BRIDGE for p in of(c.Play, out))  # field prompts
    out = flow.handle(cp.CaptureStored(capture_id="CP-1"))
    back = index(out, c.AddToBridge(bridge_id=AGENT_BRIDGE, leg="caller", absorb_dtmf=True))
    assert back == index(out, c.RemoveFromBridge(bridge_id=CAPTURE_BRIDGE, leg="caller")) + 1
    assert all(index(out, cmd) > back for cmd in teardown_cmds())
    assert cp.MuteRecording(leg="caller", mute=False) in out
    (prompt,) = of(c.Play, out)
    assert prompt.bridge_id == AGENT_BRIDGE  # both hear "capture complete" and the beep
    assert prompt.media == ("sound:callsec/capture-complete", "sound:beep")
    finished = [dict(p.payload) for p in of(c.Publish, out)][-1]
    assert finished["result"] == "captured" and finished["last4"] == PAN[-4:]
    assert flow.capture is not None and flow.capture.stage == "done"


def test_evidence_of_the_closed_relay_is_shown_to_the_agent() -> None:
    flow = connected()
    entering(flow, ("cvv",))
    flow.handle(cp.CaptureCancelled(capture_id="CP-1", by="api"))
    out = flow.handle(cp.MediaClosed(capture_id="CP-1", evidence=(
        ("frames_relayed", 900), ("frames_flattened", 31), ("digits_detected", 3),
        ("leaked_tone_frames", 0), ("mode", "silence"), ("max_hold_ms", 21.5))))
    assert [dict(p.payload) for p in of(c.Publish, out)] == [
        {"capture_id": "CP-1", "stage": "evidence", "tones_masked": 3, "frames_masked": 31,
         "leaked": 0, "frames_relayed": 900}]
    assert flow.handle(cp.MediaClosed(capture_id="CP-other", evidence=(("leaked", 0),))) == []


# -- the digit source ----------------------------------------------------------------------

def typed(flow: ConnectFlow, events: list[tuple[str, str, float]]) -> str | None:
    """Feeds ``(leg, key, at)`` in time order, then ``#`` from Asterisk; the stored PAN."""
    out: list[c.Command] = []
    for leg, key, at in sorted(events, key=lambda e: e[2]):
        out += flow.handle(DtmfReceived(digit=key, leg=leg, at=at))
    last = max((at for _, _, at in events), default=10.0)
    out += flow.handle(DtmfReceived(digit="#", leg="caller", at=last + 2.0))
    stores = of(cp.StoreCapture, out)
    return dict(stores[0].values)["card_number"].reveal() if stores else None


@settings(max_examples=60, deadline=None)
@given(echoes=st.lists(st.tuples(st.booleans(), st.floats(-0.04, 0.15)), min_size=16,
                       max_size=16),
       stray=st.text(alphabet="0123456789", min_size=0, max_size=3))
def test_asterisk_keys_the_capture_and_relay_digits_never_mix_in(
        echoes: list[tuple[bool, float]], stray: str) -> None:
    """The caller's keypad reaches Asterisk (``caller``) for every press; the relay
    (``caller-media``) may report some of the same presses a little before or after, and stray
    keys of its own: the capture keys exactly what Asterisk reported."""
    events = []
    at = 10.0
    for key, (echo, delay) in zip(PAN, echoes, strict=True):
        events.append(("caller", key, at))
        if echo:
            events.append(("caller-media", key, at + delay))
        at += 0.3
    events += [("caller-media", key, at + i * 0.3) for i, key in enumerate(stray)]
    flow = connected()
    entering(flow, ("card_number",))
    assert typed(flow, events) == PAN


@settings(max_examples=60, deadline=None)
@given(talk_off=st.text(alphabet="0123456789", min_size=1, max_size=3),
       relay_hears=st.booleans())
def test_talk_off_before_the_keypad_does_not_lock_out_the_callers_keys(
        talk_off: str, relay_hears: bool) -> None:
    """The relay mistook the caller's voice for keys before they typed (talk-off); then the
    caller types on an RFC 4733 keypad (the relay may or may not detect those presses too):
    the field restarts at the first key Asterisk reports, and the PAN is stored intact."""
    events = [("caller-media", key, 5.0 + i * 0.5) for i, key in enumerate(talk_off)]
    for i, key in enumerate(PAN):
        events.append(("caller", key, 10.0 + i * 0.3))
        if relay_hears:
            events.append(("caller-media", key, 10.0 + i * 0.3 - 0.02))
    flow = connected()
    entering(flow, ("card_number",))
    assert typed(flow, events) == PAN


def test_relay_digits_alone_key_an_in_band_caller_asterisk_does_not_hear() -> None:
    flow = connected()
    entering(flow, ("card_number",))
    events = [("caller-media", key, 10.0 + i * 0.3) for i, key in enumerate(PAN + "#")]
    out: list[c.Command] = []
    for leg, key, at in events:
        out += flow.handle(DtmfReceived(digit=key, leg=leg, at=at))
    (store,) = of(cp.StoreCapture, out)
    assert dict(store.values)["card_number"].reveal() == PAN


def test_relay_digits_are_ignored_outside_a_talk_through_capture() -> None:
    flow = connected(mode="bridge")
    request(flow, ("cvv",))
    assert keys(flow, CVV, leg="caller-media") == []
    assert keys(flow, CVV) != []


# -- failures while building the media path ------------------------------------------------

FAILING: list[type[c.Command]] = [c.CreateBridge, cp.OpenMedia, c.CreateExternalMedia,
                                  c.AddToBridge, cp.ConnectMedia]


def build_until(flow: ConnectFlow, failing: type[c.Command]) -> list[c.Command]:
    out = request(flow)
    if failing in (c.CreateBridge, cp.OpenMedia):
        return out
    out += flow.handle(cp.MediaOpened(capture_id="CP-1", host="127.0.0.1", caller_port=40000,
                                      agent_port=40002))
    if failing is c.CreateExternalMedia:
        return out
    out += flow.handle(ExternalMediaReady(leg="media-caller", address="127.0.0.1", port=20010))
    return out + flow.handle(ExternalMediaReady(leg="media-agent", address="127.0.0.1",
                                                port=20012))


def test_any_media_failure_cancels_with_media_failed_and_the_caller_never_moves() -> None:
    for failing in FAILING:
        flow = connected()
        out = build_until(flow, failing)
        out += flow.handle(CommandFailed(command=failing, error_id="ari_unprocessable"))
        assert caller_moves(out) == [], failing
        assert all(cmd in out for cmd in teardown_cmds()), failing
        assert cp.MuteRecording(leg="caller", mute=False) in out
        (record,) = of(cp.RecordCapture, out)
        assert (record.result, record.reason) == ("cancelled", "media_failed")
        # late results of the batch that failed change nothing
        assert flow.handle(cp.MediaConnected(capture_id="CP-1")) == []
        assert flow.handle(ExternalMediaReady(leg="media-agent", address="a", port=1)) == []
        assert flow.handle(cp.MediaOpened(capture_id="CP-1", host="h", caller_port=1,
                                          agent_port=2)) == []


def test_media_failure_falls_back_to_a_bridge_capture_when_configured() -> None:
    flow = connected(fallback=True)
    build_until(flow, c.CreateExternalMedia)
    out = flow.handle(CommandFailed(command=c.CreateExternalMedia, error_id="ari_error"))
    assert all(cmd in out for cmd in teardown_cmds())
    assert type(flow.capture) is CaptureSteering and flow.capture.stage == "entering"
    assert index(out, c.DestroyBridge(bridge_id=CAPTURE_BRIDGE)) < \
        index(out, c.CreateBridge(bridge_id=CAPTURE_BRIDGE, name=CAPTURE_BRIDGE))
    assert [p.leg for p in of(c.Play, out)].count("agent") == 1  # the hold loop again
    stages = [dict(p.payload)["stage"] for p in of(c.Publish, out)]
    assert stages == ["fallback", "started", "field_started"]
    assert not of(cp.RecordCapture, out)
    out = keys(flow, PAN + "#") + keys(flow, EXPIRY, at=20.0) + keys(flow, CVV, at=30.0)
    assert of(cp.StoreCapture, out)


def test_a_media_channel_lost_mid_capture_gives_the_caller_back() -> None:
    flow = connected()
    entering(flow)
    keys(flow, PAN[:6])
    out = flow.handle(LegGone(leg="media-agent", cause="Normal Clearing"))
    assert caller_moves(out)[-1] == c.AddToBridge(bridge_id=AGENT_BRIDGE, leg="caller",
                                                  absorb_dtmf=True)
    assert of(cp.RecordCapture, out)[0].reason == "media_lost"
    assert flow.state is K.CONNECTED
    assert flow.handle(LegGone(leg="media-caller")) == []  # our own hang-up, afterwards


def test_a_media_channel_lost_while_building_is_a_media_failure() -> None:
    flow = connected()
    request(flow)
    flow.handle(cp.MediaOpened(capture_id="CP-1", host="127.0.0.1", caller_port=1, agent_port=2))
    out = flow.handle(LegGone(leg="media-caller"))
    assert of(cp.RecordCapture, out)[0].reason == "media_failed"
    assert caller_moves(out) == []


# -- endings ------------------------------------------------------------------------------

def test_cancel_before_the_caller_moved_tears_down_without_moving_the_caller() -> None:
    flow = connected()
    request(flow)
    out = flow.handle(cp.CaptureCancelled(capture_id="CP-1", by="api"))
    assert caller_moves(out) == []
    assert all(cmd in out for cmd in teardown_cmds())
    assert of(cp.RecordCapture, out)[0].reason == "cancelled_by_api"


def test_timeout_and_resync_give_the_caller_back_first() -> None:
    for event in (TimerExpired(name="capture-overall"), Resynchronised()):
        flow = connected()
        entering(flow)
        out = flow.handle(event)
        back = index(out, c.AddToBridge(bridge_id=AGENT_BRIDGE, leg="caller", absorb_dtmf=True))
        assert all(index(out, cmd) > back for cmd in teardown_cmds())


def test_caller_hangup_tears_media_down_and_ends_the_call() -> None:
    flow = connected()
    entering(flow)
    keys(flow, PAN[:8])
    out = flow.handle(CallerHungUp())
    assert all(cmd in out for cmd in teardown_cmds())
    assert of(cp.RecordCapture, out)[0].result == "hangup"
    assert c.HangupLeg(leg="agent") in out and flow.state is K.DONE
    assert not of(cp.StoreCapture, out)


def test_agent_hangup_tears_media_down_and_tells_the_caller() -> None:
    flow = connected()
    entering(flow)
    out = flow.handle(LegGone(leg="agent"))
    assert all(cmd in out for cmd in teardown_cmds())
    assert of(cp.RecordCapture, out)[0].reason == "agent_left"
    assert [p.media for p in of(c.Play, out)] == [("sound:callsec/agent-left",)]
    assert index(out, c.DestroyBridge(bridge_id=CAPTURE_BRIDGE)) > \
        index(out, c.HangupLeg(leg="media-agent"))


def test_recovery_hangs_up_media_legs_after_giving_the_caller_back() -> None:
    flow = connected()
    out = flow.handle(Recovered(capture=True, media=("media-caller", "media-agent")))
    back = index(out, c.AddToBridge(bridge_id=AGENT_BRIDGE, leg="caller", absorb_dtmf=True))
    assert index(out, c.HangupLeg(leg="media-caller")) > back
    assert index(out, c.HangupLeg(leg="media-agent")) > back
    assert c.DestroyBridge(bridge_id=CAPTURE_BRIDGE) in out


def test_a_give_back_lost_in_an_ari_outage_hangs_up_the_media_legs_on_resync() -> None:
    flow = connected()
    entering(flow)
    flow.handle(cp.CaptureCancelled(capture_id="CP-1", by="api"))
    for _ in ("media-caller", "media-agent"):
        flow.handle(CommandFailed(command=c.HangupLeg, error_id="ari_unavailable"))
    out = flow.handle(Resynchronised())
    assert c.HangupLeg(leg="media-caller") in out and c.HangupLeg(leg="media-agent") in out
    assert c.AddToBridge(bridge_id=AGENT_BRIDGE, leg="caller", absorb_dtmf=True) in out
    assert flow.handle(Resynchronised()) == []  # settled
