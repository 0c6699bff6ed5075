"""The application's metrics registry (prometheus-client): build info, process metrics, the
runtime's call counters and histograms fed by the dispatcher, connection collectors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from callsec_ari import __version__
from callsec_ari.app import build_registry
from callsec_ari.core import commands as c
from callsec_ari.core.events import CallStarted, DtmfReceived, Event
from callsec_ari.core.ports import CallContext, CallHandle
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.metrics import CallMetrics, LinkCollector, flow_of

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class VerifyLike:
    """Publishes a verification result on the first key press, finishes on the second."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.presses = 0

    @property
    def done(self) -> bool:
        return self.presses >= 2

    @property
    def state_name(self) -> str:
        return "DONE" if self.done else "COLLECTING"

    def handle(self, event: Event) -> list[c.Command]:
        if not isinstance(event, DtmfReceived):
            return []
        self.presses += 1
        if self.presses == 1:
            return [c.Publish(topic="verification",
                              payload=(("stage", "finished"), ("result", "verified")))]
        return [c.Finish(result="verified")]


class Quiet:
    async def execute(self, call: CallHandle, command: c.Command) -> Sequence[Event]:
        return ()


def test_build_registry_has_build_info_and_process_metrics() -> None:
    found = samples(build_registry())
    assert found[("callsec_build_info", (("version", __version__),))] == 1
    assert found[("process_cpu_seconds_total", ())] >= 0
    assert ("python_info" in {name for name, _ in found})


async def test_dispatcher_feeds_flow_counters_and_latency_histograms() -> None:
    registry = CollectorRegistry()
    metrics = CallMetrics(registry)
    dispatcher = Dispatcher(Quiet(), observer=metrics)
    runner = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    call = dispatcher.start_call("C-1", VerifyLike("C-1"), CallStarted(at=loop.time(), flow="verify"),
                                 CallContext(flow="verify"))
    assert flow_of(call) == "verify"
    for _ in range(2):
        dispatcher.post("C-1", DtmfReceived(at=loop.time(), digit="1"))
    while dispatcher.get("C-1") is not None:
        await asyncio.sleep(0.01)
    dispatcher.stop()
    await runner
    found = samples(registry)
    assert found[("callsec_calls_started_total", (("flow", "verify"),))] == 1
    assert found[("callsec_calls_finished_total",
                  (("flow", "verify"), ("result", "verified")))] == 1
    assert found[("callsec_call_duration_seconds_count", (("flow", "verify"),))] == 1
    assert found[("callsec_step_duration_seconds_count",
                  (("result", "verified"), ("step", "verification")))] == 1
    assert found[("callsec_dtmf_response_seconds_count", ())] == 1  # one press sent a command
    assert metrics.totals == {("verify", "started"): 1, ("verify", "verified"): 1}


def test_a_result_that_is_no_plain_word_is_counted_as_other() -> None:
    registry = CollectorRegistry()
    metrics = CallMetrics(registry)
    call = CallHandle(call_id="C-2", flow=VerifyLike("C-2"), log=None,  # type: ignore[arg-type]
                      result="code 123456")
    metrics.call_finished(call, 1.0)
    assert samples(registry)[("callsec_calls_finished_total",
                              (("flow", "other"), ("result", "other")))] == 1


def test_link_collector_reports_each_connection_at_scrape_time() -> None:
    registry = CollectorRegistry()
    state = [("asterisk1", True, 0)]
    registry.register(LinkCollector("ami", lambda: state))
    assert samples(registry)[("callsec_ami_connected", (("server", "asterisk1"),))] == 1
    state[0] = ("asterisk1", False, 2)
    found = samples(registry)
    assert found[("callsec_ami_connected", (("server", "asterisk1"),))] == 0
    assert found[("callsec_ami_reconnects_total", (("server", "asterisk1"),))] == 2
