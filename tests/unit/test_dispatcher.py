"""The dispatcher's ordering, timers and failure feedback (asyncio, no I/O)."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from callsec_ari.core import commands as c
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.events import (
    CallStarted,
    CommandFailed,
    DtmfReceived,
    Event,
    TimerExpired,
)
from callsec_ari.core.ports import CallHandle
from callsec_ari.runtime.dispatcher import Dispatcher


@dataclass(frozen=True, kw_only=True)
class Lookup(c.Command):
    n: int


@dataclass(frozen=True, kw_only=True)
class LookedUp(Event):
    n: int


class RecordingFlow:
    """Logs every event; issues a Lookup on each digit and stops at '#'."""

    def __init__(self, call_id: str, timer: float | None = None) -> None:
        self.call_id = call_id
        self.seen: list[str] = []
        self._done = False
        self.timer = timer

    @property
    def done(self) -> bool:
        return self._done

    @property
    def state_name(self) -> str:
        return "DONE" if self._done else "RUN"

    def handle(self, event: Event) -> list[c.Command]:
        if isinstance(event, CallStarted):
            self.seen.append("start")
            return [c.StartTimer(name="t", seconds=self.timer)] if self.timer else []
        if isinstance(event, DtmfReceived):
            self.seen.append("d" + event.digit)
            if event.digit == "#":
                self._done = True
                return [c.Finish(result="complete")]
            if event.digit == "!":
                raise RuntimeError("bug in flow")
            return [Lookup(n=int(event.digit))]
        if isinstance(event, LookedUp):
            self.seen.append(f"r{event.n}")
            return []
        if isinstance(event, TimerExpired):
            self.seen.append("timer")
            self._done = True
            return [c.Finish(result="timeout")]
        if isinstance(event, CommandFailed):
            self.seen.append("failed:" + event.error_id)
            return []
        return []


class SlowExecutor:
    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on = fail_on
        self.executed: list[int] = []

    async def execute(self, call: CallHandle, command: c.Command) -> Sequence[Event]:
        assert isinstance(command, Lookup)
        await asyncio.sleep(0.01 * (5 - command.n % 5))  # later digits finish faster
        if command.n == self.fail_on:
            raise CallsecError("boom")
        self.executed.append(command.n)
        return [LookedUp(n=command.n)]


async def run_with(dispatcher: Dispatcher, body) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.TaskGroup() as tg:
        tg.create_task(dispatcher.run())
        await asyncio.sleep(0)
        await body()
        dispatcher.stop()


async def wait_done(flow: RecordingFlow, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not flow.done:
            await asyncio.sleep(0.005)


@pytest.mark.asyncio
async def test_results_of_a_command_are_handled_before_the_next_queued_event() -> None:
    executor = SlowExecutor()
    dispatcher = Dispatcher(executor)
    flow = RecordingFlow("a")

    async def body() -> None:
        dispatcher.start_call("a", flow, CallStarted(flow="x"))
        for digit in "1234#":
            dispatcher.post("a", DtmfReceived(digit=digit))
        await wait_done(flow)

    await run_with(dispatcher, body)
    assert flow.seen == ["start", "d1", "r1", "d2", "r2", "d3", "r3", "d4", "r4", "d#"]


@pytest.mark.asyncio
async def test_calls_run_concurrently_but_each_in_order() -> None:
    dispatcher = Dispatcher(SlowExecutor())
    flows = [RecordingFlow(f"c{i}") for i in range(20)]

    async def body() -> None:
        for flow in flows:
            dispatcher.start_call(flow.call_id, flow, CallStarted(flow="x"))
        for digit in "4321#":
            for flow in flows:
                dispatcher.post(flow.call_id, DtmfReceived(digit=digit))
        for flow in flows:
            await wait_done(flow)

    await run_with(dispatcher, body)
    for flow in flows:
        assert flow.seen == ["start", "d4", "r4", "d3", "r3", "d2", "r2", "d1", "r1", "d#"]


@pytest.mark.asyncio
async def test_timer_fires_when_no_event_arrives() -> None:
    dispatcher = Dispatcher(SlowExecutor())
    flow = RecordingFlow("t", timer=0.05)
    finished: list[str] = []
    dispatcher = Dispatcher(SlowExecutor(), on_finish=lambda call: finished.append(call.result))

    async def body() -> None:
        dispatcher.start_call("t", flow, CallStarted(flow="x"))
        await wait_done(flow)
        await asyncio.sleep(0.01)

    await run_with(dispatcher, body)
    assert flow.seen == ["start", "timer"]
    assert finished == ["timeout"]


@pytest.mark.asyncio
async def test_queued_events_win_over_a_timer_not_yet_due() -> None:
    dispatcher = Dispatcher(SlowExecutor())
    flow = RecordingFlow("t", timer=0.5)

    async def body() -> None:
        dispatcher.start_call("t", flow, CallStarted(flow="x"))
        dispatcher.post("t", DtmfReceived(digit="#"))
        await wait_done(flow)

    await run_with(dispatcher, body)
    assert flow.seen == ["start", "d#"]


@pytest.mark.asyncio
async def test_failed_command_comes_back_as_command_failed() -> None:
    dispatcher = Dispatcher(SlowExecutor(fail_on=2))
    flow = RecordingFlow("f")

    async def body() -> None:
        dispatcher.start_call("f", flow, CallStarted(flow="x"))
        for digit in "23#":
            dispatcher.post("f", DtmfReceived(digit=digit))
        await wait_done(flow)

    await run_with(dispatcher, body)
    assert flow.seen == ["start", "d2", "failed:internal_error", "d3", "r3", "d#"]


@pytest.mark.asyncio
async def test_a_crashing_flow_ends_only_its_own_call() -> None:
    finished: dict[str, str] = {}
    dispatcher = Dispatcher(SlowExecutor(),
                            on_finish=lambda call: finished.__setitem__(call.call_id, call.result))
    bad, good = RecordingFlow("bad"), RecordingFlow("good")

    async def body() -> None:
        dispatcher.start_call("bad", bad, CallStarted(flow="x"))
        dispatcher.start_call("good", good, CallStarted(flow="x"))
        dispatcher.post("bad", DtmfReceived(digit="!"))
        await asyncio.sleep(0.05)
        dispatcher.post("good", DtmfReceived(digit="#"))
        await wait_done(good)
        await asyncio.sleep(0.01)

    await run_with(dispatcher, body)
    assert finished == {"bad": "error", "good": "complete"}
    assert len(dispatcher) == 0


@pytest.mark.asyncio
async def test_stop_cancels_workers_of_calls_still_running() -> None:
    finished: list[str] = []
    dispatcher = Dispatcher(SlowExecutor(), on_finish=lambda call: finished.append(call.call_id))

    async def body() -> None:
        dispatcher.start_call("x", RecordingFlow("x"), CallStarted(flow="x"))
        await asyncio.sleep(0.01)

    await run_with(dispatcher, body)
    assert finished == ["x"]
