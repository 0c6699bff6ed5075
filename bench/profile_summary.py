"""Where callsec's CPU goes in a ramp: its py-spy profile summed into a few parts.

``bench/calls.py`` profiles callsec in the 250- and 500-call ramps (py-spy, 100 Hz, speedscope
JSON). Each sample's stack is put in the first part of :data:`PARTS` one of its frames
belongs to (so store work called from a flow counts as store work, a log line written
while an ARI call is made counts as logging; a websocket frame read counts as an event read,
an HTTP answer read as a REST call). Samples whose innermost frame is the event
loop's ``epoll_wait`` are left out: py-spy ``--nonblocking`` cannot always tell an idle
thread, and waiting is not CPU.

A part's ``ms_per_call`` is its share of the remaining samples times the ramp's measured CPU
per call: py-spy also counts a thread waiting for the GIL, so the shares are of samples,
scaled to what the process really used.

    python bench/profile_summary.py bench/results/profile-250.speedscope.json.gz [CPU_MS]
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

#: (part, markers): a frame belongs to the part when its file path or function name contains
#: one of the markers. Checked in this order; the first part any frame matches wins (a part
#: may be listed twice: a REST call sent over the websocket is a REST call, a websocket frame
#: read is an event read even when it carries a REST answer).
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging", ("/logging/", "callsec_ari/logs.py")),
    ("store: verification (look-up, limits, records, audit)",
     ("VerificationService._lookup_sync", "VerificationService._count_sync",
      "VerificationService._before_send", "VerificationService._record_sync",
      "VerificationService._check_sync", "VerificationService._close_interrupted_sync")),
    ("store: capture (rows, vault, audit)",
     ("CaptureHandlers._start_sync", "CaptureHandlers._save_stored", "VaultSink.store_sync",
      "callsec_ari/store/captures.py", "callsec_ari/store/vault.py")),
    ("store: cluster registry and heartbeat",
     ("callsec_ari/store/cluster.py", "ClusterNode._beat")),
    ("store: other", ("callsec_ari/store/", "sqlalchemy/", "sqlite3")),
    ("code delivery (outbox, SMS/e-mail)", ("callsec_ari/verification/delivery/",)),
    ("ARI REST calls (HTTP and websocket)",  # sending one, over either transport
     ("AriClient.request", "AriEvents._ws_request", "Floor.rest")),
    ("ARI events (read, parse, translate)",
     ("AriEvents._receive", "AriEvents._decode", "AriEvents._stream", "AriEvents.events",
      "aiohttp/client_ws.py", "aiohttp/_websocket/", "callsec_ari/ari/models.py",
      "Floor.on_event", "Floor.call_key",
      "AriAdapter.on_event", "AriAdapter._translate")),
    ("ARI REST calls (HTTP and websocket)",  # reading an HTTP answer
     ("AriClient._http_request", "aiohttp/client.py", "aiohttp/client_reqrep.py",
      "aiohttp/http_writer.py", "aiohttp/connector.py", "aiohttp/client_proto.py", "aiohttp/streams.py",
      "aiohttp/http_parser.py")),
    ("metrics and cluster observers", ("callsec_ari/runtime/metrics.py",
                                        "callsec_ari/runtime/cluster.py", "prometheus_client/")),
    ("AMI", ("panoramisk/", "callsec_ari/ami/")),
    ("flows (sans-I/O core)", ("callsec_ari/core/", "callsec_ari/connect/flow.py",
                               "callsec_ari/verification/flow.py", "/steering.py",
                               "callsec_ari/capture/entry.py", "callsec_ari/connect/captures.py")),
    ("dispatcher, executor, adapter", ("callsec_ari/runtime/", "callsec_ari/ari/adapter.py",
                                       "callsec_ari/ari/operations.py")),
)
OTHER = "event loop, sockets and the rest"
#: The event loop waiting in ``epoll_wait`` (py-spy names it ``EpollSelector.select``).
IDLE = ("select", "selectors.py")


def _frame_text(frame: dict[str, Any]) -> str:
    return f"{frame.get('file', '')} {frame.get('name', '')}"


def _part(stack: list[str]) -> str:
    for part, markers in PARTS:
        if any(marker in text for text in stack for marker in markers):
            return part
    return OTHER


def summarize(path: Path, cpu_ms_per_call: float | None = None) -> dict[str, Any]:
    """Samples per part of the profile at ``path`` (gzipped or not), and with
    ``cpu_ms_per_call`` each part's milliseconds per call."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    frames = [_frame_text(f) for f in data["shared"]["frames"]]
    parts: Counter[str] = Counter()
    idle = 0.0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not stack:
                continue
            leaf = data["shared"]["frames"][stack[-1]]
            if str(leaf.get("name", "")).endswith(IDLE[0]) and \
                    str(leaf.get("file", "")).endswith(IDLE[1]):
                idle += weight
                continue
            parts[_part([frames[i] for i in stack])] += weight
    busy = sum(parts.values())
    rows = [{"part": part, "share": round(weight / busy, 4),
             "ms_per_call": None if cpu_ms_per_call is None
             else round(weight / busy * cpu_ms_per_call, 2)}
            for part, weight in parts.most_common()] if busy else []
    return {"file": path.name, "samples_busy": round(busy, 2), "samples_idle": round(idle, 2),
            "parts": rows}


def table(summary: dict[str, Any]) -> list[str]:
    lines = ["| part | share of callsec's busy samples | ≈ ms per call |", "| --- | ---: | ---: |"]
    for row in summary["parts"]:
        ms = "-" if row["ms_per_call"] is None else f"{row['ms_per_call']:.1f}"
        lines.append(f"| {row['part']} | {row['share'] * 100:.1f}% | {ms} |")
    return lines


def main() -> int:
    cpu = float(sys.argv[2]) if len(sys.argv) > 2 else None
    print("\n".join(table(summarize(Path(sys.argv[1]), cpu))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
