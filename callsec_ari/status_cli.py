"""``callsec status [--json]``: asks the running ``callsec run`` (``callsec_ari.status``).

Exit codes: 0 running, 3 not running (no socket, or nobody answers on it), 4 status unknown
(no permission to ask, or no usable answer), 2 configuration error (``[status] socket`` empty).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from callsec_ari.config import Settings
from callsec_ari.status import EXIT_NOT_RUNNING, EXIT_RUNNING, EXIT_UNKNOWN, ask


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="connections, calls, queues and last errors of the"
                       " running callsec (exit 3: not running)")
    p.add_argument("--json", action="store_true", help="one JSON object, for machines")
    p.set_defaults(handler=_cmd_status)


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    path = settings.status.socket
    if path is None:
        print("callsec: configuration error: [status] socket is empty: callsec run answers no"
              " status requests", file=sys.stderr)
        return 2
    try:
        answer = ask(path)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"callsec is not running (nothing answers on {path})", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except PermissionError:
        print(f"callsec: cannot ask {path}: permission denied (run as the user callsec runs"
              " as, or root)", file=sys.stderr)
        return EXIT_UNKNOWN
    except (OSError, ValueError) as exc:
        print(f"callsec: no usable answer on {path} ({type(exc).__name__})", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    else:
        print(render(answer))
    return EXIT_RUNNING


def _updown(flag: object, up: str = "connected", down: str = "DISCONNECTED") -> str:
    return up if flag else down


def _connections(conn: dict[str, Any]) -> list[str]:
    lines = ["Connections:"]
    for ari in conn.get("ari", []):
        lines.append(f"  ARI      {ari['server']:<12} {_updown(ari['connected'])}"
                     f" (reconnects {ari['reconnects']})")
    ami = conn.get("ami")
    lines.append("  AMI      disabled" if ami is None else
                 f"  AMI      {ami['server']:<12} {_updown(ami['connected'])}"
                 f" (reconnects {ami['reconnects']})")
    agi = conn.get("agi")
    lines.append("  FastAGI  disabled" if agi is None else
                 f"  FastAGI  {agi['listen']:<12} "
                 f"{_updown(agi['listening'], 'listening', 'NOT LISTENING')}"
                 f" ({agi['sessions']} session(s))")
    http = conn.get("http") or {}
    lines.append("  HTTP     disabled" if not http.get("enabled") else
                 f"  HTTP     {http['listen']:<12} "
                 f"{_updown(http['listening'], 'listening', 'NOT LISTENING')}")
    return lines


def _calls(calls: dict[str, Any]) -> list[str]:
    lines = [f"Calls: {calls['active']} active"]
    for row in calls.get("by_flow_state", []):
        lines.append(f"  {row['flow']:<10} {row['state']:<28} {row['calls']}")
    since = calls.get("since_start") or {}
    if since:
        lines.append("Since start (flow: started, then finished by result):")
    for flow, counts in sorted(since.items()):
        started = counts.get("started", 0)
        results = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "started")
        lines.append(f"  {flow:<10} started {started}" + (f"; {results}" if results else ""))
    return lines


def _cluster(cluster: dict[str, Any]) -> list[str]:
    if not cluster:
        return []
    lines = [f"Cluster: this node {cluster.get('node_id')} ({cluster.get('advertise_url')})"]
    for node in cluster.get("nodes") or []:
        state = "stopped" if node["stopped"] else "alive" if node["alive"] else "DEAD"
        lines.append(f"  {node['node_id']:<16} {state:<8} heartbeat"
                     f" {node['heartbeat_age_seconds']:>6.1f} s ago, {node['calls']} call(s),"
                     f" app {node['stasis_app']}, {node['advertise_url']}")
    return lines


def render(answer: dict[str, Any]) -> str:
    up = int(float(answer.get("uptime_seconds", 0)))
    lines = [f"callsec {answer.get('version')} running, pid {answer.get('pid')},"
             f" up {up // 3600}h {up % 3600 // 60}m {up % 60}s"]
    lines += _connections(answer.get("connections") or {})
    lines += _calls(answer.get("calls") or {"active": 0})
    lines += _cluster(answer.get("cluster") or {})
    queues = answer.get("queues") or {}
    lines.append("Queues: " + ", ".join(f"{k} {v}" for k, v in sorted(queues.items())))
    errors = answer.get("last_errors") or []
    lines.append(f"Last warnings and errors ({len(errors)}):")
    for e in errors:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(e["time"])))
        lines.append(f"  {stamp} {e['level']} {e['logger']} [{e['call_id']}] {e['message']}")
    return "\n".join(lines)
