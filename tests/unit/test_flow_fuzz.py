"""Hypothesis drives the connect flow and the self-service capture flow with arbitrary key
presses, timings, prompts ending, legs coming and going, captures requested and cancelled,
reconnects and failing commands, through a small pure simulation of the dispatcher (timers,
playbacks, service answers drawn at random).

Whatever happens: no exception, exactly one ``Finish`` per call, a result from the contract,
no call stuck waiting for nothing (once every timer has fired and every prompt has played the
call is either over or connected to the agent), and a hang-up always ends it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.entry import EntryOptions, FieldEntry
from callsec_ari.capture.fields import ValidationContext
from callsec_ari.capture.selfservice import SelfServiceCaptureFlow
from callsec_ari.connect.captures import CaptureOptions
from callsec_ari.connect.flow import ConnectFlow, ConnectOptions, Recovered
from callsec_ari.core import commands as c
from callsec_ari.core.events import (
    CallerHungUp,
    CallStarted,
    CommandFailed,
    DtmfReceived,
    Event,
    LegAnswered,
    LegGone,
    PlaybackFinished,
    Resynchronised,
    TimerExpired,
)
from callsec_ari.core.flow import Flow
from callsec_ari.verification import protocol as p
from callsec_ari.verification.flow import VerificationFlow
from callsec_ari.verification.options import VerificationOptions

CONNECT_RESULTS = {"verified", "failed", "locked", "unknown_caller", "no_contact",
                   "delivery_failed", "timeout", "hangup", "skipped"}
CAPTURE_RESULTS = {"captured", "invalid", "cancelled", "timeout", "hangup"}
CTX = ValidationContext(year=2026, month=11)
KEYS = "0123456789*#"
CUSTOMERS = [p.CustomerView(ref="C-1", has_mobile=True, mobile_tail="78"),
             p.CustomerView(ref="C-2", has_email=True, preferred_method="email"),
             p.CustomerView(ref="C-3", has_totp=True, preferred_method="totp"),
             p.CustomerView(ref="C-4"), p.CustomerView(ref="C-5", has_mobile=True, locked=True)]


class Sim:
    """Carries out a flow's commands the way the dispatcher and the services would."""

    def __init__(self, flow: Flow, data: st.DataObject) -> None:
        self.flow, self.data = flow, data
        self.now = 0.0
        self.timers: dict[str, float] = {}
        #: playback id -> when it ends (every prompt lasts 2 s of simulated time)
        self.playing: dict[str, float] = {}
        self.finishes: list[str] = []
        self.capture_ids: list[str] = []
        #: The agent's leg was dialled (only then can it answer or go away).
        self.dialled = False
        self.captures = 0

    def feed(self, event: Event) -> None:
        queue: deque[Event] = deque([event])
        while queue:
            for command in self.flow.handle(queue.popleft()):
                queue.extend(self.apply(command))

    def draw(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(strategy)

    def failed(self, command: c.Command, often: float = 0.05) -> list[Event]:
        if self.draw(st.sampled_from(range(100))) < often * 100:
            error = self.draw(st.sampled_from(["ari_not_found", "database_unavailable",
                                               "recording_mute_failed", "internal_error"]))
            return [CommandFailed(command=type(command), error_id=error, at=self.now)]
        return []

    def apply(self, command: c.Command) -> list[Event]:
        if isinstance(command, c.StartTimer):
            self.timers[command.name] = self.now + command.seconds
        elif isinstance(command, c.CancelTimer):
            self.timers.pop(command.name, None)
        elif isinstance(command, c.Finish):
            self.finishes.append(command.result)
        elif isinstance(command, c.Play):
            self.playing[command.playback_id] = self.now + 2.0
            return self.failed(command, 0.02)
        elif isinstance(command, c.StopPlayback):
            self.playing.pop(command.playback_id, None)
        elif isinstance(command, c.DialLeg):
            self.dialled = True
            return self.failed(command, 0.05)
        elif isinstance(command, c.Publish | cp.RecordCapture | cp.CloseOpenCaptures):
            return []
        else:
            return self.service(command)
        return []

    def service(self, command: c.Command) -> list[Event]:
        """A feature service's answer; anything else is a channel command (Answer, bridges,
        variables...) that succeeds but for the rare failure."""
        if isinstance(command, p.LookupCustomer):
            return self.failed(command) or [p.CustomerResult(
                customer=self.draw(st.sampled_from([*CUSTOMERS[:1] * 5, *CUSTOMERS, None])),
                rate_limited=self.draw(st.sampled_from(range(10))) == 0, at=self.now)]
        if isinstance(command, p.DeliverCode):
            return self.failed(command) or [self.draw(st.sampled_from([
                *[p.CodeDelivered(method=command.method, at=self.now)] * 4,
                p.CodeDeliveryFailed(method=command.method, reason="timeout", at=self.now)]))]
        if isinstance(command, p.CheckTotp):
            return self.failed(command) or [p.TotpChecked(ok=self.draw(st.booleans()),
                                                          at=self.now)]
        if isinstance(command, p.CountCheck):
            return self.failed(command) or [p.CheckCounted(
                locked=self.draw(st.sampled_from(range(10))) == 0, at=self.now)]
        if isinstance(command, cp.MuteRecording):
            self.captures += command.mute
            return self.failed(command) or [cp.RecordingMuted(mute=command.mute, at=self.now)]
        if isinstance(command, cp.StoreCapture):
            assert all(len(v) > 0 for _, v in command.values)
            return self.failed(command, 0.2) or [cp.CaptureStored(
                capture_id=command.capture_id, at=self.now)]
        return self.failed(command, 0.01)

    def tick(self) -> None:
        self.now += self.draw(st.sampled_from([0.01, 0.1, 0.3, 1.0, 4.0]))

    def fire_timer(self) -> bool:
        if not self.timers:
            return False
        name, at = min(self.timers.items(), key=lambda item: item[1])
        del self.timers[name]
        self.now = max(self.now, at)
        self.feed(TimerExpired(name=name, at=self.now))
        return True

    def end_playback(self, first: bool = True) -> bool:
        if not self.playing:
            return False
        ids = list(self.playing)
        playback_id = ids[0 if first else -1]
        self.now = max(self.now, self.playing.pop(playback_id))
        self.feed(PlaybackFinished(playback_id=playback_id, at=self.now))
        return True

    def drain(self) -> None:
        """Simulated time runs on: prompts end and timers fire in time order, until the call
        is over or waits for nothing (an agent's looping prompt alone does not count)."""
        for _ in range(2000):
            if self.flow.done:
                return
            timer = min(self.timers.values(), default=None)
            prompt = min(self.playing.values(), default=None)
            if timer is None and (prompt is None or self.only_agent_loop()):
                return
            if prompt is not None and (timer is None or prompt <= timer):
                first = min(self.playing, key=lambda k: self.playing[k])
                self.now = max(self.now, self.playing.pop(first))
                self.feed(PlaybackFinished(playback_id=first, at=self.now))
            else:
                self.fire_timer()
        raise AssertionError(f"the call never settles (state {self.flow.state_name})")

    def only_agent_loop(self) -> bool:
        return all("-loop" in playback_id for playback_id in self.playing)


#: Control actions, the ones that move a call on repeated so that calls get connected often.
CONTROL = ["timer", "playback", "last_playback", "agent_gone", "cancel", "resync", "wait",
           *["answer"] * 4, *["capture"] * 3, *["code"] * 3]
ACTION = st.one_of(
    st.tuples(st.just("caller"), st.sampled_from(KEYS)),
    st.tuples(st.just("agent"), st.sampled_from(KEYS)),
    st.tuples(st.sampled_from(CONTROL), st.just("")),
)
ACTIONS = st.lists(ACTION, max_size=60)
LONG_ACTIONS = st.lists(ACTION, min_size=15, max_size=80)


def connect_flow(require_code: str) -> ConnectFlow:
    verification = VerificationFlow("k1", VerificationOptions(
        require_code=require_code, continue_after=False, first_digit_timeout=5.0,
        inter_digit_timeout=3.0), new_code=lambda n: "1" * n)
    return ConnectFlow("k1", verification, ConnectOptions(
        dial_string="PJSIP/agent100", connect_unverified=require_code == "never",
        captures=CaptureOptions(context=CTX, entry=EntryOptions(max_attempts=2),
                                capture_timeout=60.0, new_id=lambda: "CP-KEYPAD")))


def reached_connected(flow: ConnectFlow) -> bool:
    return any(after == "CONNECTED" for _before, _event, after in flow.history)


def act(sim: Sim, action: str, key: str) -> None:
    sim.tick()
    if action in ("caller", "agent"):
        sim.feed(DtmfReceived(digit=key, leg=action, at=sim.now))
    elif action == "code":  # the right code (new_code gives 1s), typed briskly
        for i, digit in enumerate("111111#"):
            sim.feed(DtmfReceived(digit=digit, at=sim.now + i * 0.15))
        sim.now += 1.0
    elif action == "timer":
        sim.fire_timer()
    elif action in ("playback", "last_playback"):
        sim.end_playback(first=action == "playback")
    elif action == "answer" and sim.dialled:
        sim.feed(LegAnswered(leg="agent", at=sim.now))
    elif action == "agent_gone" and sim.dialled:
        sim.dialled = False
        sim.feed(LegGone(leg="agent", at=sim.now))
    elif action == "capture":  # the web layer posts it; the call may have moved on meanwhile
        capture_id = f"CP-{len(sim.capture_ids)}"
        sim.capture_ids.append(capture_id)
        sim.feed(cp.CaptureRequested(capture_id=capture_id, fields=sim.draw(st.sampled_from(
            [("card_number", "expiry", "cvv"), ("iban",), ("national_id",)])), at=sim.now))
    elif action == "cancel" and isinstance(sim.flow, ConnectFlow) and sim.flow.capture:
        sim.feed(cp.CaptureCancelled(capture_id=sim.flow.capture.capture_id, by="api",
                                     at=sim.now))
    elif action == "resync":
        sim.feed(Resynchronised(at=sim.now))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["always", "never"]), ACTIONS, st.sampled_from([True, True, True, False]),
       LONG_ACTIONS, st.booleans(), st.data())
def test_connect_flow_survives_any_keys_timings_and_failures(
        require_code: str, before: list[tuple[str, str]], get_through: bool,
        after: list[tuple[str, str]], hang_up_early: bool, data: st.DataObject) -> None:
    """``before``: anything while the caller is verified; ``get_through``: then the right code
    and the agent answering (most runs reach the connected call); ``after``: anything again."""
    flow = connect_flow(require_code)
    sim = Sim(flow, data)
    sim.feed(CallStarted(flow="connect", caller_number="+4915112345678", at=0.0))
    through = [("code", ""), ("playback", ""), ("answer", "")] if get_through else []
    for action, key in [*before, *through, *after]:
        act(sim, action, key)
        if flow.done:
            break
    if hang_up_early or flow.done:
        sim.feed(CallerHungUp(at=sim.now))
    sim.drain()
    if not flow.done:
        assert flow.state_name == "CONNECTED", flow.state_name  # talking to the agent
        sim.feed(CallerHungUp(at=sim.now))
    assert flow.done and len(sim.finishes) == 1, sim.finishes
    assert sim.finishes[0] in CONNECT_RESULTS
    event(f"{'connected' if reached_connected(flow) else 'not connected'}: {sim.finishes[0]}")
    assert_no_capture_left(sim, flow)


def assert_no_capture_left(sim: Sim, flow: ConnectFlow) -> None:
    capture = flow.capture
    assert capture is None or capture.stage == "done"
    assert capture is None or capture.entry.values == {}
    event(f"captures started: {min(sim.captures, 3)}")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.sampled_from([True, True, True, False]), LONG_ACTIONS, st.booleans(),
       st.data())
def test_adopted_connected_call_survives_any_capture_traffic(
        capture_bridge: bool, agent_present: bool, actions: list[tuple[str, str]],
        hang_up_early: bool, data: st.DataObject) -> None:
    """A call taken over after a restart (``Recovered``), then anything: captures requested
    by API or keypad, keys, cancels, reconnects, failures, the agent leaving."""
    flow = connect_flow("always")
    flow.adopt(result="verified", customer_ref="C-1", language="en")
    sim = Sim(flow, data)
    sim.dialled = agent_present
    sim.feed(Recovered(caller_present=True, agent_present=agent_present,
                       capture=capture_bridge, at=0.0))
    for action, key in actions:
        act(sim, action, key)
        if flow.done:
            break
    if hang_up_early or flow.done:
        sim.feed(CallerHungUp(at=sim.now))
    sim.drain()
    if not flow.done:
        assert flow.state_name == "CONNECTED", flow.state_name
        sim.feed(CallerHungUp(at=sim.now))
    assert flow.done and len(sim.finishes) == 1, sim.finishes
    assert sim.finishes[0] == "verified"
    assert_no_capture_left(sim, flow)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([("card_number", "expiry", "cvv"), ("iban",), ("national_id",),
                        ("postal_code", "cvv")]),
       st.lists(st.one_of(st.sampled_from(KEYS), st.sampled_from(["T", "P", "W", "R"])),
                max_size=120), st.booleans(), st.data())
def test_self_service_capture_survives_any_keys_and_timings(
        fields: tuple[str, ...], steps: list[str], hang_up: bool, data: st.DataObject) -> None:
    entry = FieldEntry("CP-SELF", fields, CTX, EntryOptions(max_attempts=2))
    flow = SelfServiceCaptureFlow("agi-1", entry, customer_ref="C-1")
    sim = Sim(flow, data)
    sim.feed(CallStarted(flow="capture", at=0.0))
    for step in steps:
        sim.tick()
        if step == "T":
            sim.fire_timer()
        elif step == "P":
            sim.end_playback()
        elif step == "R":
            sim.feed(Resynchronised(at=sim.now))
        elif step != "W":
            sim.feed(DtmfReceived(digit=step, at=sim.now))
        if flow.done:
            break
    if hang_up:
        sim.feed(CallerHungUp(at=sim.now))
    sim.drain()
    if not flow.done:
        sim.feed(CallerHungUp(at=sim.now))
    assert flow.done and len(sim.finishes) == 1, sim.finishes
    assert sim.finishes[0] in CAPTURE_RESULTS | {"cancelled"}
    assert entry.values == {}
