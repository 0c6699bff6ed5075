"""callsec's AMI layer against real Asterisk 22: the shared sandbox A for read-only actions,
the planted-leak instance for calls (MixMonitor, DTMF events), and a loopback TCP relay in
front of A to cut the connection under :class:`AmiLink`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from callsec_ari.ami import (
    AmiAuthError,
    AmiConfigNotFound,
    AmiConnectionError,
    AmiLink,
    AmiManager,
    AmiNoSuchChannel,
    AmiPermissionError,
    MuteOutcome,
)
from callsec_ari.app import Application
from callsec_ari.config import Settings
from callsec_ari.config_check import load_settings
from callsec_ari.store.context import init_keys
from tests.harness.ari import AriClient, is_event, new_id
from tests.harness.local import LocalCall, LocalCaller
from tests.harness.planted import MONITOR_USER, PLANTED_ROOT, Planted, planted_sandbox
from tests.harness.sandbox import A_AMI_PORT, A_AMI_SECRET, A_AMI_USER, REPO_ROOT, Sandbox

pytestmark = pytest.mark.sandbox

HOST = "127.0.0.1"


@pytest.fixture(scope="session")
def planted(sandbox: Sandbox) -> Iterator[Planted]:
    yield from planted_sandbox()


@pytest.fixture
async def ami(sandbox: Sandbox) -> AsyncIterator[AmiManager]:
    async with AmiManager(HOST, A_AMI_PORT, A_AMI_USER, A_AMI_SECRET) as manager:
        yield manager


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def test_sandbox_user_logs_in_and_answers_ping(ami: AmiManager) -> None:
    assert ami.connected
    await ami.ping()
    await ami.close()
    assert not ami.connected
    with pytest.raises(AmiConnectionError):
        await ami.ping()


async def test_wrong_secret_is_an_auth_error_naming_the_user(sandbox: Sandbox) -> None:
    with pytest.raises(AmiAuthError) as caught:
        async with AmiManager(HOST, A_AMI_PORT, A_AMI_USER, "wrong-secret"):
            pass
    assert "callsec" in caught.value.message
    assert "wrong-secret" not in caught.value.message


async def test_refused_port_is_a_connection_error() -> None:
    port = _free_port()
    with pytest.raises(AmiConnectionError, match="cannot connect"):
        async with AmiManager(HOST, port, "u", "p", timeout=2):
            pass


async def test_silent_server_times_out_within_the_connect_timeout() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers
        writer.close()

    server = await asyncio.start_server(mute, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(AmiConnectionError, match="no answer within"):
            async with AmiManager(HOST, port, "u", "p", timeout=0.5):
                pass
        assert loop.time() - started < 2


async def test_get_config_returns_sections_and_keeps_same_named_ones_apart(
    ami: AmiManager,
) -> None:
    manager_conf = await ami.get_config("manager.conf")
    assert ("bindaddr", "127.0.0.1") in manager_conf["general"]
    assert dict(manager_conf["callsec"])["read"] == "system,call,reporting,config"
    categories = [c for c in await ami.get_config_categories("pjsip.conf") if c.name == "pstn"]
    assert [c.get("type") for c in categories] == ["endpoint", "aor", "identify"]
    endpoint = categories[0]
    assert endpoint.templates == ("endpoint-common",)
    assert endpoint.get("direct_media") == "no"  # inherited from the template


async def test_get_config_of_a_missing_file_raises_not_found(ami: AmiManager) -> None:
    with pytest.raises(AmiConfigNotFound):
        await ami.get_config("callsec-no-such-file.conf")


async def test_module_check_tells_loaded_from_absent_modules(ami: AmiManager) -> None:
    assert await ami.module_loaded("app_mixmonitor")
    assert await ami.module_loaded("app_mixmonitor.so")
    assert not await ami.module_loaded("cdr_csv")  # noload in the sandbox


async def test_command_needs_the_command_class_which_the_sandbox_user_lacks(
    ami: AmiManager,
) -> None:
    with pytest.raises(AmiPermissionError):
        await ami.command("core show version")


async def test_mute_and_getvar_on_a_missing_channel_raise_no_such_channel(
    ami: AmiManager,
) -> None:
    with pytest.raises(AmiNoSuchChannel):
        await ami.mixmonitor_mute("PJSIP/callsec-test-none-00000001", mute=True)
    with pytest.raises(AmiNoSuchChannel):
        await ami.getvar("PJSIP/callsec-test-none-00000001", "CALLSEC_RESULT")


# -- calls on the planted instance --------------------------------------------------------------
@contextlib.asynccontextmanager
async def _answered_local_call(planted: Planted) -> AsyncIterator[LocalCall]:
    """A Local call into A's number 1100 (Stasis(callsec,probe)), answered by us."""
    async with AriClient(planted.a, ["callsec"]) as app, LocalCaller(planted.a) as caller:
        call = await caller.call("1100")
        await app.wait_event(lambda e: is_event(e, "StasisStart", call.peer_id), timeout=10,
                             what="StasisStart ;2")
        await app.channel(call.peer_id).answer()
        await call.wait_up(timeout=10)
        yield call


async def test_mixmonitor_mute_says_no_recording_until_one_runs_then_mutes_it(
    planted: Planted,
) -> None:
    path = f"/tmp/{new_id('callsec-ami-test')}.wav"
    async with AmiManager(HOST, planted.ami_port, "callsec", "callsec") as ami, \
            _answered_local_call(planted) as call:
        channel = call.peer_id  # ARI's channel id is Asterisk's unique id: AMI accepts it
        assert await ami.mixmonitor_mute(channel, mute=True) is MuteOutcome.NO_RECORDING
        await ami.send("MixMonitor", Channel=channel, File=path)
        assert await ami.mixmonitor_mute(channel, direction="read", mute=True) \
            is MuteOutcome.APPLIED
        assert await ami.mixmonitor_mute(channel, mute=False) is MuteOutcome.APPLIED
        assert await ami.getvar(channel, "MIXMONITOR_FILENAME") == path
        await call.hangup()
    Path(PLANTED_ROOT + path).unlink(missing_ok=True)


async def test_dtmf_events_reach_an_ami_user_with_read_all_but_not_callsec(
    planted: Planted,
) -> None:
    async with AmiManager(HOST, planted.ami_port, "callsec", "callsec", events=True) as own, \
            AmiManager(HOST, planted.ami_port, *MONITOR_USER, events=True) as monitor, \
            _answered_local_call(planted) as call:
        with own.subscribe("DTMF*") as own_events, monitor.subscribe("DTMFEnd") as seen:
            await call.send_dtmf("42#", between_ms=80, duration_ms=100)
            ends = [await asyncio.wait_for(seen.get(), 5) for _ in range(3)]
            await asyncio.sleep(0.3)
            assert [e.headers["Digit"] for e in ends] == ["4", "2", "#"]
            assert "4" not in repr(ends[0])  # events never show their headers in repr
            assert own_events.pending() == []
        await call.hangup()


# -- AmiLink: reconnects ------------------------------------------------------------------------
class _Relay:
    """A loopback TCP relay to A's AMI whose connections a test can cut."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.accepted = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(HOST, A_AMI_PORT)
        self.writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(pump(reader, up_writer))
            tg.create_task(pump(up_reader, writer))

    def cut(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()


async def test_link_reconnects_after_the_connection_drops(sandbox: Sandbox) -> None:
    relay = _Relay()
    server = await asyncio.start_server(relay.handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    link = AmiLink(lambda: AmiManager(HOST, port, A_AMI_USER, A_AMI_SECRET, timeout=2),
                   server=f"{HOST}:{port}", reconnect_min=0.05, reconnect_max=0.2, keepalive=1)
    async with server, asyncio.TaskGroup() as tg:
        runner = tg.create_task(link.run())
        await asyncio.wait_for(link.wait_connected(), 5)
        with pytest.raises(AmiNoSuchChannel):  # the link forwards to a live connection
            await link.mixmonitor_mute("PJSIP/callsec-test-none-00000001", mute=True)
        relay.cut()
        await asyncio.sleep(0.05)
        with pytest.raises(AmiConnectionError):
            await link.mixmonitor_mute("PJSIP/callsec-test-none-00000001", mute=True)
        for _ in range(100):
            if link.connected and relay.accepted >= 2:
                break
            await asyncio.sleep(0.05)
        assert link.connected and link.reconnects == 1
        await link.manager().ping()
        runner.cancel()


async def test_link_keeps_trying_while_ami_is_down_and_reports_unavailable() -> None:
    port = _free_port()
    link = AmiLink(lambda: AmiManager(HOST, port, "u", "p", timeout=0.5), server=f"{HOST}:{port}",
                   reconnect_min=0.05, reconnect_max=0.1)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(link.run())
        await asyncio.sleep(0.4)
        assert not runner.done() and not link.connected
        with pytest.raises(AmiConnectionError):
            await link.mixmonitor_mute("PJSIP/x-00000001", mute=True)
        runner.cancel()


# -- Application.ami ----------------------------------------------------------------------------
def _app_settings(planted: Planted, tmp_path: Path, ami_port: int) -> Settings:
    settings = load_settings(REPO_ROOT / "config" / "callsec.conf", env={
        "CALLSEC_ARI__URLS": planted.a.base_url, "CALLSEC_ARI__APP": "callsec-ami-test",
        "CALLSEC_AMI__PORT": str(ami_port), "CALLSEC_WEB__ENABLED": "no",
        "CALLSEC_AGI__ENABLED": "no", "CALLSEC_DATABASE__URL": f"sqlite:///{tmp_path}/db.sqlite",
        "CALLSEC_CRYPTO__KEYRING_DIR": str(tmp_path / "keys"),
        "CALLSEC_SMS__OUTBOX_DIR": str(tmp_path / "outbox")})
    init_keys(settings)  # keys are created only on purpose
    return settings


async def test_application_exposes_a_connected_ami_link(planted: Planted, tmp_path: Path) -> None:
    app = Application(_app_settings(planted, tmp_path, planted.ami_port))
    assert isinstance(app.ami, AmiLink)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(app.run())
        await asyncio.wait_for(app.ready.wait(), 20)
        await asyncio.wait_for(app.ami.wait_connected(), 10)
        with pytest.raises(AmiNoSuchChannel):
            await app.ami.mixmonitor_mute("PJSIP/callsec-test-none-00000001", mute=True)
        app.stop()


async def test_application_runs_on_while_ami_is_down(planted: Planted, tmp_path: Path) -> None:
    app = Application(_app_settings(planted, tmp_path, _free_port()))
    assert app.ami is not None
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(app.run())
        await asyncio.wait_for(app.ready.wait(), 20)
        await asyncio.sleep(0.5)
        assert not runner.done() and not app.ami.connected
        with pytest.raises(AmiConnectionError):
            await app.ami.mixmonitor_mute("PJSIP/callsec-test-none-00000001", mute=True)
        app.stop()
