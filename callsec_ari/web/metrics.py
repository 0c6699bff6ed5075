"""``/healthz`` (no sign-in) and ``/metrics`` (Prometheus text format, prometheus-client).

``/metrics`` renders the application's ``CollectorRegistry`` (``WebDeps.registry``, built in the
composition root): process and platform metrics, ``callsec_build_info``, the runtime's call
counters and latency histograms (``callsec_ari.runtime.metrics``) and :class:`StateCollector`,
which reads at scrape time: active calls (dispatcher), verifications and captures by result
(``EventBus.counters``), ARI connection state and reconnects per server
(``AriClient.reconnects``), the code-delivery gateway latency histogram (``Deliveries.latency``)
and the number of asyncio tasks alive in the process (``make soak`` watches it for leaks).
``/metrics`` needs ``metrics.read`` or, for scrapers, ``Authorization: Bearer <[web]
metrics_token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import math
from collections.abc import Iterable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from callsec_ari.access.roles import endpoint
from callsec_ari.web.deps import WebDeps
from callsec_ari.web.guard import Handler, admit, deps_of

VERIFICATION_RESULTS = frozenset({"verified", "failed", "locked", "unknown_caller", "no_contact",
                                  "delivery_failed", "timeout", "hangup", "skipped"})
CAPTURE_RESULTS = frozenset({"captured", "invalid", "cancelled", "timeout", "hangup"})
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _num(value: float) -> str:
    """A bucket bound as Prometheus writes it (``0.05``, ``+Inf``)."""
    return "+Inf" if math.isinf(value) else repr(float(value))


def _results(deps: WebDeps, topic: str, known: Iterable[str]) -> dict[str, int]:
    names = set(known)
    return {label: n for (t, label), n in sorted(deps.bus.counters.items())
            if t == topic and label in names}


class StateCollector(Collector):
    """What the web layer's dependencies know, read at scrape time (no work on the hot path)."""

    def __init__(self, deps: WebDeps) -> None:
        self.deps = deps

    def collect(self) -> Iterator[Metric]:
        deps = self.deps
        yield GaugeMetricFamily("callsec_active_calls", "Calls currently handled",
                                value=sum(1 for _ in deps.calls))
        for topic, known, what in (("verification", VERIFICATION_RESULTS, "verifications"),
                                   ("capture", CAPTURE_RESULTS, "captures")):
            family = CounterMetricFamily(f"callsec_{what}", f"Finished {what} by result",
                                         labels=["result"])
            for result, count in _results(deps, topic, known).items():
                family.add_metric([result], count)
            yield family
        connected = GaugeMetricFamily("callsec_ari_connected",
                                      "1 while the ARI events websocket is up", labels=["server"])
        reconnects = CounterMetricFamily("callsec_ari_reconnects", "ARI websocket reconnects",
                                         labels=["server"])
        for link in deps.ari:
            connected.add_metric([link.server], int(link.connected.is_set()))
            reconnects.add_metric([link.server], link.client.reconnects)
        yield connected
        yield reconnects
        yield GaugeMetricFamily("callsec_sse_subscribers", "Open progress streams (agent desks)",
                                value=deps.bus.subscribers)
        yield GaugeMetricFamily("callsec_asyncio_tasks", "asyncio tasks alive in the process",
                                value=len(asyncio.all_tasks()))
        yield from self._latency()

    def _latency(self) -> Iterator[Metric]:
        latency = self.deps.latency
        histograms = latency.histograms if latency is not None else {}
        family = HistogramMetricFamily("callsec_delivery_latency_seconds",
                                       "Code delivery gateway latency per attempt",
                                       labels=["backend"])
        failures = CounterMetricFamily("callsec_delivery_failures", "Failed delivery attempts",
                                       labels=["backend"])
        for backend, hist in sorted(histograms.items()):
            buckets = [(_num(bound), count) for bound, count in hist.cumulative()]
            if not buckets or buckets[-1][0] != "+Inf":
                buckets.append(("+Inf", hist.count))
            family.add_metric([backend], buckets, hist.total)
            failures.add_metric([backend], hist.failures)
        yield family
        yield failures


def render_metrics(deps: WebDeps) -> bytes:
    return generate_latest(deps.registry) if deps.registry is not None else b""


def _scraper(request: web.Request, deps: WebDeps) -> bool:
    token = str(deps.web.metrics_token)
    header = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


async def metrics(request: web.Request) -> web.StreamResponse:
    deps = deps_of(request)
    if not _scraper(request, deps):
        await admit(request, endpoint("GET", "/metrics"))
    return web.Response(body=render_metrics(deps), headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.StreamResponse:
    deps = deps_of(request)
    try:
        await asyncio.to_thread(deps.db.check)
        db_ok = True
    except Exception:  # any failure means "not healthy"; the reason is not for this page
        db_ok = False
    ari = {link.server: link.connected.is_set() for link in deps.ari}
    ok = db_ok and all(ari.values())
    return web.json_response({"status": "ok" if ok else "degraded", "db": db_ok, "ari": ari},
                             status=200 if ok else 503)


OWN: dict[tuple[str, str], Handler] = {
    ("GET", "/healthz"): healthz,
    ("GET", "/metrics"): metrics,
}
