"""The control protocol between callsec and its media worker process: one JSON object per line.

callsec -> worker (the worker's stdin):

- ``{"op": "open", "id": N, "options": {...}, "host", "peer_host", "call_id"}``
- ``{"op": "peers", "id": N, "caller": [host, port] | null, "agent": [host, port] | null}``
- ``{"op": "close", "id": N}``

worker -> callsec (a private copy of the worker's stdout; its fd 1 points at stderr):

- ``{"ev": "opened", "id": N, "caller_port", "agent_port"}`` or ``{"ev": "failed", "id": N,
  "reason": <exception class name>}``
- ``{"ev": "digit", "id": N, "key", "at"}``: a key detected in-band. Keys cross only this pipe
  (between two processes of the same user), never a log line.
- ``{"ev": "closed", "id": N, "evidence": {...}}`` (:meth:`Evidence.as_dict`)
- ``{"ev": "log", "level", "name", "msg", "call_id"}``: the worker's log records, logged again
  by callsec (the relay's messages carry no digits).

``at`` is the worker's ``loop.time()``: ``time.monotonic()``, the same clock in both processes.
"""

from __future__ import annotations

import json
from typing import Any

#: A line longer than this is a protocol error (the longest message is well under 1 KiB).
MAX_LINE = 64 * 1024


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One message; ValueError for anything that is not a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("not a message object")
    return message


def address(value: Any) -> tuple[str, int] | None:
    """``[host, port]`` (or null) as carried by a ``peers`` message."""
    if value is None:
        return None
    host, port = value
    return str(host), int(port)
