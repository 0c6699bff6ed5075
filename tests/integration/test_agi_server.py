"""The FastAGI server and port over real TCP on 127.0.0.1, against a scripted fake Asterisk.

The fake speaks what res_agi.c speaks: the ``agi_*`` header block, ``200 result=...`` replies,
multi-line ``520`` blocks, the unsolicited ``HANGUP`` line and ``511`` on a dead channel; it
splits our command lines with the same ``parse_args`` rules Asterisk uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from callsec_ari.agi.adapter import AgiPort
from callsec_ari.agi.protocol import ALL_DTMF_KEYS, AgiCommandError, AgiRequest, parse_args
from callsec_ari.agi.server import AgiServer, AgiSession
from callsec_ari.core.ports import CallHandle
from callsec_ari.probe.flow import ProbeFlow
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.executor import CallExecutor

PROMPT = "callsec/probe-enter-digits"
THANKS = "callsec/probe-thanks"
DEAD = "511 Command Not Permitted on a dead channel or intercept routine"


def headers(port: int, path: str, uniqueid: str) -> bytes:
    lines = [
        "agi_network: yes", f"agi_network_script: {path}",
        f"agi_request: agi://127.0.0.1:{port}/{path}", "agi_channel: PJSIP/carrier-00000001",
        "agi_language: en", "agi_type: PJSIP", f"agi_uniqueid: {uniqueid}",
        "agi_version: 22.10.1", "agi_callerid: +4915112345678", "agi_calleridname: Jane",
        "agi_context: sandbox", "agi_extension: 3000", "agi_priority: 2", "agi_enhanced: 0.0",
        "agi_accountcode: ", "agi_threadid: 140000000000000",
    ]
    return ("\n".join(lines) + "\n\n").encode()


class FakeAsterisk:
    """The Asterisk end of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.transcript: list[list[str]] = []

    @classmethod
    async def connect(cls, port: int, path: str = "probe",
                      uniqueid: str = "1718000000.1") -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(headers(port, path, uniqueid))
        await writer.drain()
        return cls(reader, writer)

    async def command(self, timeout: float = 5.0) -> list[str] | None:
        """The next command as Asterisk would split it; ``None`` when callsec closed."""
        async with asyncio.timeout(timeout):
            raw = await self.reader.readline()
        if not raw:
            return None
        assert raw.endswith(b"\n")
        argv = parse_args(raw.decode())
        self.transcript.append(argv)
        return argv

    async def expect(self, *prefix: str) -> list[str]:
        argv = await self.command()
        assert argv is not None and argv[:len(prefix)] == list(prefix), argv
        return argv

    async def send(self, *lines: str) -> None:
        self.writer.write("".join(line + "\n" for line in lines).encode())
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


class Ticker:
    """Measures event-loop responsiveness: the longest gap between 10 ms sleeps."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.ticks = 0

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def serving(handler: Callable[[AgiSession], Awaitable[None]],
                  header_timeout: float = 1.0) -> AsyncIterator[AgiServer]:
    server = AgiServer(handler, host="127.0.0.1", port=0, header_timeout=header_timeout)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(server.serve())
        await server.ready.wait()
        try:
            yield server
        finally:
            task.cancel()


class Confirmed:
    """The session check answering "checks out" (the fake Asterisk has no ARI; the check
    itself is tested in ``test_agi_trust.py`` and ``tests/unit/test_agi_session_check.py``)."""

    async def confirm(self, request: AgiRequest) -> str | None:
        return None


class Stack:
    """Dispatcher + AgiPort + AgiServer running the real probe flow."""

    def __init__(self) -> None:
        self.results: dict[str, str] = {}
        self.dispatcher = Dispatcher(CallExecutor(), on_finish=self._finished)
        self.port = AgiPort(self.dispatcher, {"probe": lambda cid, _started: ProbeFlow(cid)},
                            check=Confirmed(), poll_ms=200)
        self.server = AgiServer(self.port.handle, host="127.0.0.1", port=0)

    def _finished(self, call: CallHandle) -> None:
        self.port.forget(call)
        self.results[call.call_id] = call.result


@contextlib.asynccontextmanager
async def probe_stack() -> AsyncIterator[Stack]:
    stack = Stack()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(stack.dispatcher.run())
        serve = tg.create_task(stack.server.serve())
        await stack.server.ready.wait()
        try:
            yield stack
        finally:
            serve.cancel()
            stack.dispatcher.stop()


async def play_asterisk(fake: FakeAsterisk, *, prompt_reply: list[str], digits: str = "",
                        after_prompt: list[str] | None = None) -> dict[str, str]:
    """Answer callsec's commands like Asterisk until callsec closes; returns SET VARIABLEs.

    ``WAIT FOR DIGIT`` times out until the prompt was played, then yields ``digits`` one per
    poll; ``after_prompt`` replaces the reply to the first command after the prompt."""
    variables: dict[str, str] = {}
    pending = list(digits)
    prompt_played = False
    while (argv := await fake.command()) is not None:
        if after_prompt is not None and prompt_played:
            await fake.send(*after_prompt)
            after_prompt = None
        elif argv[:3] == ["WAIT", "FOR", "DIGIT"]:
            if prompt_played and pending:
                await fake.send(f"200 result={ord(pending.pop(0))}")
            else:
                await asyncio.sleep(0.02)
                await fake.send("200 result=0")
        elif argv[:2] == ["STREAM", "FILE"]:
            assert argv[3] == ALL_DTMF_KEYS
            if argv[2] == PROMPT:
                prompt_played = True
                await fake.send(*prompt_reply)
            else:
                await fake.send("200 result=0 endpos=8000")
        elif argv[:2] == ["SET", "VARIABLE"]:
            variables[argv[2]] = argv[3]
            await fake.send("200 result=1")
        elif argv[:2] == ["GET", "VARIABLE"] or argv == ["ANSWER"] or argv == ["NOOP"]:
            await fake.send("200 result=0")
        else:
            await fake.send("510 Invalid or unknown command")
    return variables


def names(transcript: list[list[str]]) -> list[str]:
    """Commands other than the DTMF poll, with the file for STREAM FILE."""
    out = []
    for argv in transcript:
        if argv[:3] == ["WAIT", "FOR", "DIGIT"]:
            continue
        out.append(" ".join(argv[:3]) if argv[:2] == ["STREAM", "FILE"] else " ".join(argv[:2]))
    return out


# --- (1) a client that leaves during the headers ------------------------------------------

async def test_disconnect_during_headers_leaves_no_task_and_next_session_works(caplog):
    caplog.set_level(logging.WARNING, logger="callsec_ari.agi.server")
    seen: list[str | None] = []

    async def handler(session: AgiSession) -> None:
        seen.append(await session.get_variable("GREETING"))

    ticker = Ticker()
    async with serving(handler) as server, asyncio.TaskGroup() as tg:
        tick_task = tg.create_task(ticker.run())
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\nagi_request: agi://127.0.0.1/pro")  # mid-line
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await eventually(lambda: "disconnected during the headers" in caplog.text)
        await eventually(lambda: server.connections == 0)
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "agi-connection"]
        await asyncio.sleep(0.3)  # an observation window: a spinning reader would starve this
        ticks_in_window = ticker.ticks

        fake = await FakeAsterisk.connect(server.port, "anything", "1.1")
        await fake.expect("GET", "VARIABLE", "GREETING")
        await fake.send("200 result=1 (hello)")
        assert await fake.command() is None  # the handler returned: callsec closed
        await eventually(lambda: server.connections == 0)
        await fake.close()
        tick_task.cancel()
    assert seen == ["hello"]
    assert ticks_in_window >= 10
    assert ticker.max_gap < 0.25, f"event loop blocked for {ticker.max_gap:.3f} s"


async def test_stalled_client_is_cut_off_while_other_sessions_run(caplog):
    caplog.set_level(logging.WARNING, logger="callsec_ari.agi.server")
    seen: list[str | None] = []

    async def handler(session: AgiSession) -> None:
        seen.append(await session.get_variable("GREETING"))

    ticker = Ticker()
    async with serving(handler, header_timeout=0.3) as server, asyncio.TaskGroup() as tg:
        tick_task = tg.create_task(ticker.run())
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\n")
        await writer.drain()
        fake = await FakeAsterisk.connect(server.port, "x", "2.2")
        await fake.expect("GET", "VARIABLE", "GREETING")
        await fake.send("200 result=1 (hi)")
        assert await fake.command() is None
        async with asyncio.timeout(2):
            assert await reader.read() == b""  # the stalled client was closed
        assert "no complete header block" in caplog.text
        await eventually(lambda: server.connections == 0)
        writer.close()
        await fake.close()
        tick_task.cancel()
    assert seen == ["hi"]
    assert ticker.max_gap < 0.25


# --- (2) the unsolicited HANGUP line ---------------------------------------------------------

async def test_hangup_line_before_a_reply_keeps_replies_paired():
    got: dict[str, object] = {}

    async def handler(session: AgiSession) -> None:
        got["a"] = await session.get_variable("A")
        got["hung_up"] = session.hung_up
        await session.set_variable("CALLSEC_RESULT", "hangup")
        got["b"] = await session.get_variable("B")

    async with serving(handler) as server:
        fake = await FakeAsterisk.connect(server.port, "x", "3.3")
        await fake.expect("GET", "VARIABLE", "A")
        await fake.send("HANGUP", "200 result=1 (alpha)")
        await fake.expect("SET", "VARIABLE", "CALLSEC_RESULT", "hangup")
        await fake.send("200 result=1")
        await fake.expect("GET", "VARIABLE", "B")
        await fake.send("200 result=1 (beta)")
        assert await fake.command() is None
        await fake.close()
    assert got == {"a": "alpha", "hung_up": True, "b": "beta"}


async def test_hangup_while_idle_gives_the_flow_caller_hung_up():
    async with probe_stack() as stack:
        fake = await FakeAsterisk.connect(stack.server.port, "probe", "4.4")
        await play_asterisk(fake, prompt_reply=["200 result=0 endpos=16000"],
                            after_prompt=["HANGUP", DEAD])
        await fake.close()
        await eventually(lambda: "agi-4.4" in stack.results)
    assert stack.results["agi-4.4"] == "hangup"
    assert "SET VARIABLE" not in names(fake.transcript)


async def test_hangup_during_prompt_is_confirmed_and_reported():
    async with probe_stack() as stack:
        fake = await FakeAsterisk.connect(stack.server.port, "probe", "5.5")
        # what res_agi sends when the caller hangs up during STREAM FILE
        await play_asterisk(fake, prompt_reply=["200 result=-1 endpos=480", "HANGUP"])
        await fake.close()
        await eventually(lambda: "agi-5.5" in stack.results)
    assert stack.results["agi-5.5"] == "hangup"
    after_prompt = fake.transcript[[a[:3] for a in fake.transcript].index(
        ["STREAM", "FILE", PROMPT]) + 1:]
    assert after_prompt[0] == ["NOOP"]
    assert all(a[:3] != ["STREAM", "FILE", THANKS] for a in after_prompt)


async def test_connection_lost_mid_call_ends_the_flow_as_hangup():
    async with probe_stack() as stack:
        fake = await FakeAsterisk.connect(stack.server.port, "probe", "6.6")
        while (argv := await fake.command()) is not None:
            if argv[:2] == ["STREAM", "FILE"]:
                await fake.close()  # Asterisk gone (AGIEXITONHANGUP, crash...)
                break
            await fake.send("200 result=0")
        await eventually(lambda: "agi-6.6" in stack.results)
        await eventually(lambda: stack.server.connections == 0)
    assert stack.results["agi-6.6"] == "hangup"


# --- (3) multi-line 520 ------------------------------------------------------------------

async def test_multiline_520_reply_is_consumed_completely():
    got: dict[str, object] = {}

    async def handler(session: AgiSession) -> None:
        with pytest.raises(AgiCommandError) as info:
            await session.command("STREAM FILE", "only-a-name")
        got["code"] = info.value.code
        got["usage"] = info.value.usage
        got["b"] = await session.get_variable("B")

    async with serving(handler) as server:
        fake = await FakeAsterisk.connect(server.port, "x", "7.7")
        await fake.expect("STREAM", "FILE", "only-a-name")
        await fake.send("520-Invalid command syntax.  Proper usage follows:",
                        " Usage: STREAM FILE <filename> <escape_digits> [sample offset]",
                        "        Send the given file, allowing playback to be interrupted.",
                        "", "520 End of proper usage.")
        await fake.expect("GET", "VARIABLE", "B")
        await fake.send("200 result=1 (beta)")
        assert await fake.command() is None
        await fake.close()
    assert got["code"] == 520
    assert got["b"] == "beta"
    assert len(got["usage"]) == 3


# --- (4) the probe flow end to end ------------------------------------------------------------

async def test_probe_flow_runs_end_to_end_over_agi():
    async with probe_stack() as stack:
        fake = await FakeAsterisk.connect(stack.server.port, "probe", "1718000000.9")
        variables = await play_asterisk(
            fake, prompt_reply=[f"200 result={ord('4')} endpos=1234"], digits="27#")
        await fake.close()
        await eventually(lambda: "agi-1718000000.9" in stack.results)
        await eventually(lambda: stack.server.connections == 0)
    assert stack.results["agi-1718000000.9"] == "complete"
    assert variables == {"CALLSEC_PROBE_RESULT": "complete", "CALLSEC_PROBE_COUNT": "3"}
    order = names(fake.transcript)
    assert order == ["GET VARIABLE", "ANSWER", f"STREAM FILE {PROMPT}", "SET VARIABLE",
                     "SET VARIABLE", f"STREAM FILE {THANKS}"]
    # the session ended right after the farewell: nothing but a last poll may follow it
    tail = fake.transcript[[a[:3] for a in fake.transcript].index(["STREAM", "FILE", THANKS]):]
    assert all(a[:3] == ["WAIT", "FOR", "DIGIT"] for a in tail[1:])


async def test_unknown_script_ends_the_session_at_once():
    async with probe_stack() as stack:
        fake = await FakeAsterisk.connect(stack.server.port, "nosuchflow", "8.8")
        assert await fake.command() is None
        await fake.close()
        assert len(stack.dispatcher) == 0
