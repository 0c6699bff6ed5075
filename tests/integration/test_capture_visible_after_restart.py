"""A stored capture stays visible to its agent after callsec restarts, whatever the agent's
endpoint is called: ``agent1000``, or a plain extension number such as ``1000`` (a run of four
or more digits, which the audit trail's redaction blanks).

The capture is made on an injected connected call (as in ``test_capture_service``) by the
real capture service over the real store, requested through the API or from the agent's
keypad, and ends recorded. The restart is a new store, capture service and dispatcher over the
same database and keys: nothing the first process held in memory survives. The agent reads the
capture through the HTTP API; another agent still gets 404."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.service import CaptureFeature
from callsec_ari.capture.sinks import VaultSink
from callsec_ari.config_check import load_settings
from callsec_ari.connect.flow import ConnectFlow, K
from callsec_ari.core.events import CallStarted
from callsec_ari.core.ports import CallContext, CallHandle
from callsec_ari.flows import FlowRegistry
from callsec_ari.logs import call_logger
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.executor import CallExecutor
from callsec_ari.store.context import Store, open_store
from tests.integration.web_env import PASSWORD, WebEnv, web_env

pytestmark = pytest.mark.asyncio


def feature(store: Store) -> CaptureFeature:
    return CaptureFeature(store, Dispatcher(CallExecutor()), VaultSink(store.vault, "DE"),
                          ami=lambda: None)


def connected_call(dial: str) -> CallHandle:
    flow = FlowRegistry(load_settings(None, env={})).connect(
        "call-1", CallStarted(flow="connect", args=(dial,)))
    assert isinstance(flow, ConnectFlow)
    flow.resume(K.CONNECTED)
    return CallHandle(call_id="call-1", flow=flow,
                      log=call_logger(logging.getLogger("test"), "call-1"),
                      context=CallContext(channel_name="PJSIP/pstn-00000001",
                                          endpoints={"agent": dial}))


async def capture_and_record(service: CaptureFeature, call: CallHandle, how: str) -> str:
    """One capture on ``call``, requested ``how`` (``api`` | ``keypad``), then recorded."""
    assert isinstance(call.flow, ConnectFlow)
    if how == "api":
        capture_id = await service.request(call, ["iban"], actor="user:dora")
        call.flow.handle(cp.CaptureRequested(capture_id=capture_id, fields=("iban",)))
    else:  # the agent's keypad: the flow starts it, the service hears of it at the mute
        capture_id = "CP-3f9a00c1be7d4e52"
        call.flow.handle(cp.CaptureRequested(capture_id=capture_id, fields=("iban",),
                                             requested_by="agent-keypad"))
        await service.mute_recording(call, cp.MuteRecording(leg="caller", mute=True))
    await service.record_capture(call, cp.RecordCapture(
        capture_id=capture_id, customer_ref="", result="cancelled", fields=("iban",),
        reason="agent", requested_by="user:dora"))
    return capture_id


async def status_for(env: WebEnv, name: str, capture_id: str) -> tuple[int, dict[str, object]]:
    resp = await env.client.get(f"/api/v1/captures/{capture_id}",
                                headers=await env.login(name))
    return resp.status, dict(await resp.json())


@pytest.mark.parametrize("how", ["api", "keypad"])
@pytest.mark.parametrize("endpoint", ["agent1000", "1000", "4711", "agent105"])
async def test_a_stored_capture_stays_visible_to_its_agent_after_a_restart(
        tmp_path: Path, endpoint: str, how: str) -> None:
    async with web_env(tmp_path) as env:
        env.secrets["dora"] = env.users.add("dora", "agent", PASSWORD, endpoint=endpoint,
                                            team="green", actor="test").secret
        first = feature(env.store)
        env.deps.captures = first
        capture_id = await capture_and_record(first, connected_call(f"PJSIP/{endpoint}"), how)
        assert (await status_for(env, "dora", capture_id))[0] == 200  # before the restart

        restarted = open_store(load_settings(env.config_path, env={}))
        try:
            env.deps.captures = feature(restarted)  # a new process: nothing in memory
            status, data = await status_for(env, "dora", capture_id)
            assert status == 200, data
            assert data["state"] == "cancelled"
            status, data = await status_for(env, "anna", capture_id)  # not hers
            assert (status, data["error_id"]) == (404, "not_found")
        finally:
            restarted.close()
