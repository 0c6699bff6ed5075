"""The thin FastAGI port: AGI sessions -> core events, core channel commands -> AGI commands.

The same sans-I/O flows as behind ARI run here; only the I/O differs. The request path picks
the flow (``agi://127.0.0.1:4573/capture?fields=card_number,expiry,cvv`` -> flow ``capture``
with option ``fields``); the call id is ``agi-<agi_uniqueid>``.

Before anything is sent to the session, its AGI environment is confirmed against Asterisk
(:class:`~callsec_ari.agi.trust.SessionCheck`: the channel exists, with that name and caller ID,
and runs AGI). A session that does not check out is closed with nothing written to it, so the
dialplan of a real channel goes on with ``CALLSEC_RESULT`` unset (never ``verified``) and
``AGISTATUS=SUCCESS``, and ``refused`` reports it (log line and ``agi.session_refused``).

- ``Answer`` -> ``ANSWER``; ``SetVariables`` -> ``SET VARIABLE`` (also on a dead channel, so
  the ``h`` extension can read the result); ``Hangup`` -> ``HANGUP``.
- ``Play`` -> ``STREAM FILE`` (``sound:``) / ``SAY DIGITS`` (``digits:``) / ``SAY NUMBER`` /
  ``SAY ALPHA`` with every DTMF key as an escape digit. A key that interrupts the prompt comes
  back as ``DtmfReceived``; ``PlaybackFinished`` follows when the prompt ends or is interrupted,
  and also when a file cannot be played (as ARI reports a failed playback). A ``Play`` in another
  language than the channel's sets ``CHANNEL(language)`` first.
- ``ContinueDialplan`` -> the AGI session ends once the flow is over (Asterisk sees EOF and goes
  on at the next priority).
- While no command runs, the connection's task polls ``WAIT FOR DIGIT`` and posts
  ``DtmfReceived``; commands and the poller share the one AGI channel through the session's lock.
  Asterisk drops DTMF that arrives while no AGI command reads the channel, hence the poll.
- The ``HANGUP`` line, ``511``, ``result=-1`` (confirmed by a ``NOOP``) and EOF mean the caller
  hung up: ``CallerHungUp`` is reported exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from callsec_ari.agi.protocol import (
    ALL_DTMF_KEYS,
    AgiCommandError,
    AgiError,
    AgiHangup,
    AgiRequest,
    media_command,
)
from callsec_ari.agi.server import AgiSession
from callsec_ari.agi.trust import DUPLICATE_SESSION, SessionCheck, safe_call_id
from callsec_ari.core import commands as c
from callsec_ari.core import events as e
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.flow import Flow
from callsec_ari.core.ports import CallContext, CallHandle
from callsec_ari.logs import CallLogger, call_logger
from callsec_ari.runtime.dispatcher import Dispatcher

log = logging.getLogger(__name__)

#: The same shape as ``callsec_ari.ari.adapter.FlowFactory``: one flows mapping serves both.
FlowFactory = Callable[[str, e.CallStarted], Flow]
#: Told of a refused session: (peer address, call id, reason, flow name).
SessionRefused = Callable[[str, str, str, str], None]

_LANGUAGE = re.compile(r"^[A-Za-z0-9_-]{1,16}$")


def call_started(request: AgiRequest, *, at: float = 0.0, attestation: str = "") -> e.CallStarted:
    """The first event of an AGI call, from its header block."""
    return e.CallStarted(
        at=at, flow=request.script, args=request.args, options=request.options,
        language=dict(request.options).get("lang") or request.language or "en",
        caller_number=request.callerid, attestation=attestation,
    )


@dataclass(eq=False)
class AgiCall:
    """What the port keeps per AGI call (``call.context.port_state``)."""

    call_id: str
    session: AgiSession
    language: str
    log: CallLogger
    hangup_reported: bool = False
    #: ContinueDialplan or Hangup was carried out: no more polling.
    finishing: bool = False
    #: The dispatcher forgot the call (its flow is over).
    forgotten: asyncio.Event = field(default_factory=asyncio.Event)


class AgiPort:
    """Runs every FastAGI session's flow in the dispatcher and carries out its commands."""

    def __init__(self, dispatcher: Dispatcher, flows: Mapping[str, FlowFactory], *,
                 check: SessionCheck, refused: SessionRefused | None = None,
                 poll_ms: int = 200, hangup_grace: float = 10.0,
                 continue_grace: float = 2.0) -> None:
        self.dispatcher = dispatcher
        self.flows = flows
        self.check = check
        self.refused = refused
        self.poll_ms = poll_ms
        self.hangup_grace = hangup_grace
        self.continue_grace = continue_grace
        self.calls: dict[str, AgiCall] = {}

    # -- sessions in (the AgiServer handler) ------------------------------------------------
    async def handle(self, session: AgiSession) -> None:
        request = session.request
        reason = DUPLICATE_SESSION if f"agi-{request.uniqueid}" in self.calls \
            else await self.check.confirm(request)
        if reason is None and f"agi-{request.uniqueid}" in self.calls:
            reason = DUPLICATE_SESSION  # the real session started while this one was checked
        if reason is not None:  # nothing is sent: the session closes when this returns
            flow = request.script if request.script in self.flows else "other"
            if self.refused is not None:
                self.refused(session.peer_host, safe_call_id(request), reason, flow)
            else:
                log.warning("FastAGI session refused: %s", reason,
                            extra={"call_id": safe_call_id(request)})
            return
        call_id = f"agi-{request.uniqueid}"
        clog = call_logger(log, call_id)
        factory = self.flows.get(request.script)
        if factory is None:
            clog.error("AGI script %r names no callsec flow; ending the AGI (dialplan goes on)",
                       request.script)
            return
        try:
            attestation = await session.get_variable("STIR_SHAKEN_ATTESTATION") or ""
        except AgiHangup:
            clog.info("caller hung up before flow %s started", request.script)
            return
        loop = asyncio.get_running_loop()
        started = call_started(request, at=loop.time(), attestation=attestation)
        state = AgiCall(call_id=call_id, session=session, language=request.language, log=clog)
        try:
            self.dispatcher.start_call(call_id, factory(call_id, started), started,
                                       CallContext(port=self, port_state=state))
        except CallsecError as exc:  # already active, or bad options (e.g. unknown fields)
            clog.error("cannot start flow %s: %s (%s)", request.script, exc.message, exc.error_id)
            return
        self.calls[call_id] = state
        clog.info("call entered flow %s over FastAGI", request.script)
        try:
            await self._run(state)
        finally:
            self.calls.pop(call_id, None)

    async def _run(self, state: AgiCall) -> None:
        session = state.session
        await self._poll(state)
        if not state.forgotten.is_set():
            if session.hung_up or session.closed:
                self._post_hangup(state)
                grace = self.hangup_grace
            else:
                grace = self.continue_grace if state.finishing else self.hangup_grace
            try:
                async with asyncio.timeout(grace):
                    await state.forgotten.wait()
            except TimeoutError:
                state.log.warning("flow still running %.1f s after the AGI ended; closing", grace)
        await session.close()
        if not state.forgotten.is_set():
            self._post_hangup(state)  # like StasisEnd after continue: the call left callsec

    async def _poll(self, state: AgiCall) -> None:
        """``WAIT FOR DIGIT`` while no command runs, until the flow ends or the channel does."""
        session = state.session
        loop = asyncio.get_running_loop()
        while not self._idle_over(state):
            digit: str | None = None
            try:
                async with session.exclusive():
                    if self._idle_over(state):
                        break
                    digit = await session.wait_for_digit(self.poll_ms)
            except AgiHangup:
                break
            except AgiError as exc:
                state.log.warning("polling for DTMF failed: %s; ending the AGI", exc.error_id)
                await session.close()
                break
            if digit is not None:
                self.dispatcher.post(state.call_id, e.DtmfReceived(at=loop.time(), digit=digit))

    @staticmethod
    def _idle_over(state: AgiCall) -> bool:
        session = state.session
        return (state.finishing or state.forgotten.is_set() or session.hung_up
                or session.closed)

    def forget(self, call: CallHandle) -> None:
        """Finish hook: the flow is over, so the session may end."""
        state = call.context.port_state
        if isinstance(state, AgiCall):
            state.forgotten.set()

    # -- hangup reporting -----------------------------------------------------------------------
    def _hangup_events(self, state: AgiCall) -> list[e.Event]:
        if state.hangup_reported:
            return []
        state.hangup_reported = True
        state.log.info("caller hung up (AGI)")
        return [e.CallerHungUp(at=asyncio.get_running_loop().time())]

    def _post_hangup(self, state: AgiCall) -> None:
        for event in self._hangup_events(state):
            self.dispatcher.post(state.call_id, event)

    async def _alive(self, state: AgiCall) -> bool:
        """After ``result=-1``: did the channel hang up? A ``HANGUP`` line precedes the reply
        to the next command if so; ``NOOP`` is allowed on dead channels."""
        try:
            await state.session.noop()
        except AgiError:
            return False
        return not state.session.hung_up

    # -- commands out ---------------------------------------------------------------------------
    async def execute(self, call: CallHandle, command: c.Command) -> Sequence[e.Event]:
        state = call.context.port_state
        assert isinstance(state, AgiCall)
        session = state.session
        if isinstance(command, c.ContinueDialplan):
            state.finishing = True
            return ()
        try:
            if isinstance(command, c.SetVariables):
                await self._set_variables(state, command)
                return ()
            if session.hung_up or session.closed:
                call.log.debug("%s skipped: the AGI channel is gone", command.kind)
                return self._hangup_events(state)
            if state.finishing:
                call.log.debug("%s skipped: the AGI session is ending", command.kind)
                return ()
            return await self._channel_command(state, command)
        except AgiHangup:
            return self._hangup_events(state)
        except AgiCommandError:
            if await self._alive(state):
                raise
            return self._hangup_events(state)

    async def _channel_command(self, state: AgiCall, command: c.Command) -> Sequence[e.Event]:
        if isinstance(command, c.Answer):
            await state.session.answer()
        elif isinstance(command, c.Play):
            return await self._play(state, command)
        elif isinstance(command, c.StopPlayback):
            pass  # STREAM FILE returns when its file ends: nothing plays between commands
        elif isinstance(command, c.Hangup):
            await state.session.hangup()
            state.finishing = True
            return self._hangup_events(state)
        else:
            raise AgiError(f"no AGI translation for command {command.kind}")
        return ()

    async def _set_variables(self, state: AgiCall, command: c.SetVariables) -> None:
        for name, value in command.values:
            if state.session.closed:
                state.log.debug("variable %s not set: the AGI session is closed", name)
                return
            await state.session.set_variable(name, value)

    async def _play(self, state: AgiCall, command: c.Play) -> Sequence[e.Event]:
        items = [(uri, *media_command(uri)) for uri in command.media]
        session = state.session
        events: list[e.Event] = []
        async with session.exclusive():
            await self._ensure_language(state, command.language)
            for uri, verb, target in items:
                try:
                    if verb == "STREAM FILE":
                        key, _endpos = await session.stream_file(target, ALL_DTMF_KEYS)
                    else:
                        key = await session.say(verb, target, ALL_DTMF_KEYS)
                except AgiCommandError:
                    if not await self._alive(state):
                        return self._hangup_events(state)
                    shown = target if verb == "STREAM FILE" else uri.partition(":")[0]
                    state.log.warning("could not play %s over AGI", shown)
                    continue
                if key is not None:
                    events.append(e.DtmfReceived(at=asyncio.get_running_loop().time(),
                                                 digit=key))
                    break
        events.append(e.PlaybackFinished(at=asyncio.get_running_loop().time(),
                                         playback_id=command.playback_id))
        return events

    async def _ensure_language(self, state: AgiCall, language: str) -> None:
        if not language or language == state.language or not _LANGUAGE.match(language):
            return
        await state.session.set_variable("CHANNEL(language)", language)
        state.language = language

    def snapshot(self) -> dict[str, Any]:
        return {"agi_calls": len(self.calls)}
