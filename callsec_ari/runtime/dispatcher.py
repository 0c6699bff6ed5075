"""The dispatcher: one flow per call, each call's events in order, timers, command execution.

Every call has a worker task inside the dispatcher's ``asyncio.TaskGroup``. The worker takes
the call's next event (or fires its earliest timer), hands it to the flow, and carries out the
returned commands one after another through the executor (a ``core.ports.ChannelPort``).
Results of a command (e.g. "customer found") are handled before the next queued event, so cause
and effect stay in order. A command that fails comes back to the flow as :class:`CommandFailed`;
a bug in a flow or an executor ends that call only (logged), never its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from callsec_ari.core.commands import CancelTimer, Command, Finish, StartTimer
from callsec_ari.core.errors import CallsecError, Conflict
from callsec_ari.core.events import CommandFailed, DtmfReceived, Event, TimerExpired
from callsec_ari.core.flow import Flow
from callsec_ari.core.ports import CallContext, CallHandle, ChannelPort
from callsec_ari.logs import call_logger, current_call

log = logging.getLogger(__name__)


@dataclass(eq=False)
class ActiveCall(CallHandle):
    """A call as the dispatcher runs it: the port's view plus its event queue, timers, worker."""

    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    timers: dict[str, float] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


FinishHook = Callable[[CallHandle], None]


class Observer(Protocol):
    """Metrics (``callsec_ari.runtime.metrics.CallMetrics``): told of starts, ends and sent
    commands; must be quick and must not raise."""

    def call_started(self, call: CallHandle) -> None: ...

    def call_finished(self, call: CallHandle, now: float) -> None: ...

    def command_sent(self, call: CallHandle, command: Command, since_key: float | None,
                     now: float) -> None: ...


class Dispatcher:
    def __init__(self, executor: ChannelPort, *, on_finish: FinishHook | None = None,
                 observer: Observer | None = None) -> None:
        self._executor = executor
        self._on_finish = on_finish
        self._observer = observer
        self._calls: dict[str, ActiveCall] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._stop = asyncio.Event()

    # -- life cycle ---------------------------------------------------------------------
    async def run(self) -> None:
        """Run until :meth:`stop`; then the workers of calls still running are cancelled
        (their channels stay in Asterisk; a restarted callsec finds them again)."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            try:
                await self._stop.wait()
            finally:
                self._tg = None
                for call in list(self._calls.values()):
                    if call.task is not None:
                        call.task.cancel()
        log.info("dispatcher stopped", extra={"call_id": "-"})

    def stop(self) -> None:
        self._stop.set()

    # -- calls --------------------------------------------------------------------------
    def start_call(self, call_id: str, flow: Flow, first: Event,
                   context: CallContext | None = None) -> ActiveCall:
        if self._tg is None:
            raise Conflict("dispatcher is not running")
        if call_id in self._calls:
            raise Conflict(f"call {call_id} already active")
        loop = asyncio.get_running_loop()
        call = ActiveCall(call_id=call_id, flow=flow, log=call_logger(log, call_id),
                          context=context or CallContext(), started_at=loop.time())
        self._calls[call_id] = call
        call.queue.put_nowait(first)
        call.task = self._tg.create_task(self._worker(call), name=f"call-{call_id}")
        if self._observer is not None:
            self._observer.call_started(call)
        return call

    def post(self, call_id: str, event: Event) -> bool:
        call = self._calls.get(call_id)
        if call is None:
            return False
        call.queue.put_nowait(event)
        return True

    def get(self, call_id: str) -> ActiveCall | None:
        return self._calls.get(call_id)

    def __iter__(self) -> Iterator[ActiveCall]:
        return iter(list(self._calls.values()))

    def __len__(self) -> int:
        return len(self._calls)

    # -- the worker ---------------------------------------------------------------------
    async def _worker(self, call: ActiveCall) -> None:
        current_call.set(call.call_id)  # this task's context only (asyncio copies it per task)
        try:
            while not call.flow.done:
                event = await self._next_event(call)
                await self._handle(call, event)
        except Exception:  # a bug must end this call only, not every call in the group
            call.log.exception("call flow crashed in state %s", call.flow.state_name)
            call.result = call.result or "error"
        finally:
            self._calls.pop(call.call_id, None)
            call.timers.clear()
            call.log.info("call finished: %s", call.result or "unknown")
            if self._observer is not None:
                self._observer.call_finished(call, asyncio.get_running_loop().time())
            if self._on_finish is not None:
                self._on_finish(call)

    async def _next_event(self, call: ActiveCall) -> Event:
        loop = asyncio.get_running_loop()
        while True:
            if not call.timers:
                return await call.queue.get()
            name, deadline = min(call.timers.items(), key=lambda item: item[1])
            delay = deadline - loop.time()
            if delay <= 0:
                del call.timers[name]
                return TimerExpired(name=name, at=loop.time())
            if not call.queue.empty():
                return call.queue.get_nowait()
            try:
                async with asyncio.timeout(delay):
                    return await call.queue.get()
            except TimeoutError:
                continue

    async def _handle(self, call: ActiveCall, event: Event) -> None:
        loop = asyncio.get_running_loop()
        call.trigger = event
        key_at = event.at if isinstance(event, DtmfReceived) else None
        pending: deque[Event] = deque([event])
        while pending:
            current = pending.popleft()
            before = call.flow.state_name
            commands = call.flow.handle(current)
            if call.flow.state_name != before:
                call.log.debug("Transition: %s -> %s -> %s", before, type(current).__name__,
                               call.flow.state_name)
            for command in commands:
                if isinstance(command, StartTimer):
                    call.timers[command.name] = loop.time() + command.seconds
                elif isinstance(command, CancelTimer):
                    call.timers.pop(command.name, None)
                elif isinstance(command, Finish):
                    call.result = command.result
                else:
                    if self._observer is not None:
                        now = loop.time()
                        self._observer.command_sent(
                            call, command, None if key_at is None else now - key_at, now)
                        key_at = None
                    pending.extend(await self._execute(call, command))

    async def _execute(self, call: ActiveCall, command: Command) -> Sequence[Event]:
        try:
            return await self._executor.execute(call, command)
        except CallsecError as exc:
            if call.flow.done:
                call.log.debug("%s failed after the flow ended: %s", command.kind, exc.error_id)
                return []
            call.log.warning("%s failed: %s", command.kind, exc.error_id)
            return [CommandFailed(command=type(command), error_id=exc.error_id,
                                  message=exc.message, at=asyncio.get_running_loop().time())]
