"""Counters and latency histograms the runtime feeds as calls go (prometheus-client).

:class:`CallMetrics` owns its instruments in the registry it is given (one per application,
built in the composition root; nothing global): calls started and finished per flow and result,
call duration per flow, the time from a call's start to its verification or capture result, and
the time from a caller's key press (DTMF) to the first command callsec sends for it. Updates are
plain counter/histogram calls (prometheus-client's own small lock; no I/O, no awaits).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callsec_ari.core.commands import Command, Publish
from callsec_ari.core.ports import CallHandle

#: Flow names per flow class, for calls whose adapter did not name the flow.
_FLOW_CLASSES = {"VerificationFlow": "verify", "ConnectFlow": "connect",
                 "SelfServiceCaptureFlow": "capture", "ProbeFlow": "probe",
                 "ReturnToDialplan": "none"}
#: Buckets for a call's or a step's duration (seconds): a verification takes ~10-60 s.
LONG_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0, 1800.0)
#: Buckets for the key press -> command latency (seconds).
SHORT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def flow_of(call: CallHandle) -> str:
    """The flow's name (``verify``, ``connect``, ``capture``, ``probe``; ``none`` for a call
    only sent back to the dialplan)."""
    named = call.context.flow
    if isinstance(named, str) and named:
        return named
    return _FLOW_CLASSES.get(type(call.flow).__name__, "other")


def _result(value: str) -> str:
    # results are short fixed words; anything else is not a label value
    return value if value and len(value) <= 32 and value.replace("_", "").isalpha() else "other"


class CallMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.started = Counter("callsec_calls_started", "Calls that entered a flow",
                               ["flow"], registry=registry)
        self.finished = Counter("callsec_calls_finished", "Calls whose flow ended, by result",
                                ["flow", "result"], registry=registry)
        self.duration = Histogram("callsec_call_duration_seconds",
                                  "Time from a call entering its flow to the flow's end",
                                  ["flow"], buckets=LONG_BUCKETS, registry=registry)
        self.step = Histogram("callsec_step_duration_seconds",
                              "Time from a call's start to its verification or capture result",
                              ["step", "result"], buckets=LONG_BUCKETS, registry=registry)
        #: (flow, "started" or a result) -> calls, for ``callsec status``.
        self.totals: collections.Counter[tuple[str, str]] = collections.Counter()
        self.response = Histogram("callsec_dtmf_response_seconds",
                                  "Time from a key press to the first command sent for it",
                                  buckets=SHORT_BUCKETS, registry=registry)

    # -- dispatcher hooks (see Dispatcher(observer=...)) -------------------------------------
    def call_started(self, call: CallHandle) -> None:
        flow = flow_of(call)
        self.started.labels(flow).inc()
        self.totals[(flow, "started")] += 1

    def call_finished(self, call: CallHandle, now: float) -> None:
        flow = flow_of(call)
        result = _result(call.result or "unknown")
        self.finished.labels(flow, result).inc()
        self.totals[(flow, result)] += 1
        self.duration.labels(flow).observe(max(0.0, now - call.started_at))

    def command_sent(self, call: CallHandle, command: Command, since_key: float | None,
                     now: float) -> None:
        """``since_key``: seconds since the key press that caused ``command``, when it is the
        first command sent for that key press."""
        if since_key is not None:
            self.response.observe(max(0.0, since_key))
        if isinstance(command, Publish) and command.topic in ("verification", "capture"):
            result = dict(command.payload).get("result")
            if isinstance(result, str) and result:
                self.step.labels(command.topic, _result(result)).observe(
                    max(0.0, now - call.started_at))


#: One connection's state: (server name, connected, reconnects since start).
LinkState = tuple[str, bool, int]


class LinkCollector(Collector):
    """``callsec_<kind>_connected{server}`` (0/1) and ``callsec_<kind>_reconnects_total``,
    read at scrape time (e.g. AMI; ARI's are in the web layer's state collector)."""

    def __init__(self, kind: str, links: Callable[[], Iterable[LinkState]]) -> None:
        self.kind = kind
        self.links = links

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"callsec_{self.kind}_connected",
                               f"1 while the {self.kind.upper()} connection is up",
                               labels=["server"])
        again = CounterMetricFamily(f"callsec_{self.kind}_reconnects",
                                    f"{self.kind.upper()} reconnects", labels=["server"])
        for server, connected, reconnects in self.links():
            up.add_metric([server], int(connected))
            again.add_metric([server], reconnects)
        yield up
        yield again
