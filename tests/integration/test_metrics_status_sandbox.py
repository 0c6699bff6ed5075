"""What operators watch, on a real `callsec run`: `/metrics` (prometheus-client) after one real
verified sandbox call, and `callsec status [--json]` while it runs and once it has stopped."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from callsec_ari import __version__
from tests.harness.callsec_proc import REPO, CallsecProcess, code_from
from tests.harness.carrier import Carrier
from tests.integration.test_verification_sandbox import a_channel, fresh_mobile, wait_var

pytestmark = pytest.mark.sandbox
TOKEN = "scrape-the-status-test"


@pytest.fixture
async def callsec(sandbox, register_secret) -> AsyncIterator[CallsecProcess]:  # type: ignore[no-untyped-def]
    workdir = REPO / "var" / "test" / "metrics-status"
    shutil.rmtree(workdir, ignore_errors=True)
    proc = CallsecProcess(workdir, env_overrides={
        "CALLSEC_WEB__METRICS_TOKEN": TOKEN,
        "CALLSEC_STATUS__SOCKET": str(workdir / "callsec.ctl")})
    await proc.start()
    yield proc
    proc.stop()
    for message in proc.outbox_messages():
        register_secret(code_from(message))


async def scrape(proc: CallsecProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{proc.env()['CALLSEC_WEB__PORT']}/metrics"
    async with aiohttp.ClientSession() as http, \
            http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            assert labels.pop("node")  # every sample names its node ([cluster] node_id)
            samples[(s.name, tuple(sorted(labels.items())))] = s.value
    return samples


async def verified_call(proc: CallsecProcess, carrier: Carrier,
                        ari_a: aiohttp.ClientSession) -> None:
    mobile = fresh_mobile()
    proc.add_customer(name="Olga Operator", mobile=mobile)
    before = len(proc.outbox_messages())
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    code = code_from(await proc.wait_message(before + 1))
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(1.0)
    await call.send_dtmf(code + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    await call.hangup()


async def finished_verify(proc: CallsecProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                          float]:
    key = ("callsec_calls_finished_total", (("flow", "verify"), ("result", "verified")))
    async with asyncio.timeout(15):
        while True:
            samples = await scrape(proc)
            if samples.get(key, 0) >= 1:
                return samples
            await asyncio.sleep(0.3)


async def test_metrics_and_status_after_a_verified_call_and_status_once_stopped(
        callsec: CallsecProcess, carrier: Carrier, ari_a: aiohttp.ClientSession) -> None:
    await verified_call(callsec, carrier, ari_a)
    samples = await finished_verify(callsec)
    assert samples[("callsec_build_info", (("version", __version__),))] == 1
    assert samples[("callsec_ari_connected", (("server", "asterisk1"),))] == 1
    assert samples[("callsec_calls_started_total", (("flow", "verify"),))] >= 1
    assert samples[("callsec_verifications_total", (("result", "verified"),))] >= 1
    assert samples[("callsec_step_duration_seconds_count",
                    (("result", "verified"), ("step", "verification")))] >= 1
    assert samples[("callsec_dtmf_response_seconds_count", ())] >= 1
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert [v for (name, _), v in samples.items() if name == "callsec_ami_connected"] == [1]

    text = callsec.cli("status")
    assert text.returncode == 0, text.stderr
    assert "ARI      asterisk1    connected" in text.stdout
    assert "verify     started 1; verified 1" in text.stdout
    answer = json.loads(callsec.cli("status", "--json").stdout)
    assert answer["connections"]["ari"] == [
        {"server": "asterisk1", "connected": True, "reconnects": 0}]
    assert answer["connections"]["agi"]["listening"] is True
    assert answer["calls"]["since_start"]["verify"] == {"started": 1, "verified": 1}
    assert set(answer["queues"]) >= {"dispatcher_events", "late_records", "agi_refusal_audit"}
    me = answer["cluster"]["node_id"]  # [cluster] node_id, default the host name
    assert [(n["node_id"], n["alive"]) for n in answer["cluster"]["nodes"]
            if n["node_id"] == me] == [(me, True)]
    assert f"Cluster: this node {me}" in text.stdout

    callsec.stop()
    stopped = callsec.cli("status")
    assert stopped.returncode == 3
    assert "callsec is not running" in stopped.stderr
    assert stopped.stdout == ""
