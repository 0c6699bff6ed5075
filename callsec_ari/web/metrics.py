"""``/healthz`` (no sign-in) and ``/metrics`` (Prometheus text format 0.0.4).

Metrics are read at scrape time from in-process counters: active calls (dispatcher),
verifications and captures by result (``EventBus.counters``), ARI connection state and
reconnects per server (``AriClient.reconnects``), the code-delivery gateway latency
histogram (``Deliveries.latency``) and the number of asyncio tasks alive in the process
(``make soak`` watches it for leaks). ``/metrics`` needs ``metrics.read`` or, for scrapers,
``Authorization: Bearer <[web] metrics_token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import math
from collections.abc import Iterable

from aiohttp import web

from callsec_ari.access.roles import endpoint
from callsec_ari.web.deps import WebDeps
from callsec_ari.web.guard import Handler, admit, deps_of

VERIFICATION_RESULTS = frozenset({"verified", "failed", "locked", "unknown_caller", "no_contact",
                                  "delivery_failed", "timeout", "hangup", "skipped"})
CAPTURE_RESULTS = frozenset({"captured", "invalid", "cancelled", "timeout", "hangup"})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: str) -> None:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{inner}}} {_num(value)}" if inner else f"{name} {_num(value)}")

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def _results(deps: WebDeps, topic: str, known: Iterable[str]) -> dict[str, int]:
    names = set(known)
    return {label: n for (t, label), n in sorted(deps.bus.counters.items())
            if t == topic and label in names}


def _latency(out: _Text, deps: WebDeps) -> None:
    name = "callsec_delivery_latency_seconds"
    out.family(name, "histogram", "Code delivery gateway latency per attempt")
    histograms = deps.latency.histograms if deps.latency is not None else {}
    for backend, hist in sorted(histograms.items()):
        for bound, count in hist.cumulative():
            out.sample(f"{name}_bucket", count, backend=backend, le=_num(bound))
        out.sample(f"{name}_sum", hist.total, backend=backend)
        out.sample(f"{name}_count", hist.count, backend=backend)
    out.family("callsec_delivery_failures_total", "counter", "Failed delivery attempts")
    for backend, hist in sorted(histograms.items()):
        out.sample("callsec_delivery_failures_total", hist.failures, backend=backend)


def render_metrics(deps: WebDeps) -> str:
    out = _Text()
    out.family("callsec_active_calls", "gauge", "Calls currently handled")
    out.sample("callsec_active_calls", sum(1 for _ in deps.calls))
    for topic, known, what in (("verification", VERIFICATION_RESULTS, "verifications"),
                               ("capture", CAPTURE_RESULTS, "captures")):
        name = f"callsec_{what}_total"
        out.family(name, "counter", f"Finished {what} by result")
        for result, count in _results(deps, topic, known).items():
            out.sample(name, count, result=result)
    out.family("callsec_ari_connected", "gauge", "1 while the ARI events websocket is up")
    for link in deps.ari:
        out.sample("callsec_ari_connected", int(link.connected.is_set()), server=link.server)
    out.family("callsec_ari_reconnects_total", "counter", "ARI websocket reconnects")
    for link in deps.ari:
        out.sample("callsec_ari_reconnects_total", link.client.reconnects, server=link.server)
    out.family("callsec_sse_subscribers", "gauge", "Open progress streams (agent desks)")
    out.sample("callsec_sse_subscribers", deps.bus.subscribers)
    out.family("callsec_asyncio_tasks", "gauge", "asyncio tasks alive in the process")
    out.sample("callsec_asyncio_tasks", len(asyncio.all_tasks()))
    _latency(out, deps)
    return out.render()


def _scraper(request: web.Request, deps: WebDeps) -> bool:
    token = str(deps.web.metrics_token)
    header = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


async def metrics(request: web.Request) -> web.StreamResponse:
    deps = deps_of(request)
    if not _scraper(request, deps):
        await admit(request, endpoint("GET", "/metrics"))
    return web.Response(body=render_metrics(deps).encode("utf-8"),
                        headers={"Content-Type": CONTENT_TYPE})


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
