#!/usr/bin/env python3
"""Leak scan: after the test suite, search every log, database file, dump and captured SSE
stream for every sensitive value the suite used (card numbers, CVVs, IBANs, IDs, one-time codes).

Values come from ``var/test/secrets.txt`` (one per line; tests append through the
``register_secret`` fixture) plus the fixed test numbers below. Places scanned: ``var/log``,
``var/sandbox/{a,b}/log`` (Asterisk A and B), ``var/test`` (pytest temp dirs, SSE captures,
databases), ``var/*.db*`` and a ``pg_dump`` of ``CALLSEC_TEST_PG_URL`` when reachable. Skipped on
purpose: outbox directories (the development SMS outbox must hold the code: it is the "phone")
and WAV audio. Any hit fails with the file named (exit 1). Values shorter than 6 characters are
searched only in logs. A value matches only as a whole number (no digit right before or after it),
so a 6-digit code does not "match" inside a longer channel id or timestamp. Hex ids (test ids
such as ``carrier-486216467eec403e``, hashes) are blanked first: a run of digits inside one is a
random number no caller typed (a 4-digit CVV matched inside a test id's hex in a clean-clone CI).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VAR = REPO / "var"
FIXED = [
    "4111111111111111", "4012888888881881", "5555555555554444", "2223000048400011",
    "378282246310005", "371449635398431", "DE89370400440532013000", "89370400440532013000",
]
ASTERISK_PREFIX = re.compile(rb"\b[A-Z_]+\[\d+\](?:\[C-[0-9a-f]+\])?")
#: The source location Asterisk writes after the prefix (``manager.c:2405``).
ASTERISK_SOURCE = re.compile(rb"\b[a-z0-9_]+\.c:\d+")
#: A hex token of 12+ characters with at least one letter: an id or a hash, never a typed value.
HEX_ID = re.compile(rb"(?<![0-9A-Za-z])(?=[0-9a-f]*[a-f])[0-9a-f]{12,}(?![0-9A-Za-z])")
SKIP_DIRS = {"outbox", "keys", "__pycache__"}
SKIP_SUFFIXES = {".wav", ".gsm", ".ulaw", ".png", ".pyc"}


def secrets() -> list[str]:
    values = set(FIXED)
    registry = VAR / "test" / "secrets.txt"
    if registry.exists():
        values.update(v.strip() for v in registry.read_text().splitlines() if v.strip())
    return sorted(v for v in values if len(v) >= 4)


def files() -> list[Path]:
    roots = [VAR / "log", VAR / "test", VAR / "sandbox" / "a" / "log", VAR / "sandbox" / "b" / "log"]
    found = [p for p in VAR.glob("*.db*") if p.is_file()]
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
            for name in filenames:
                path = Path(dirpath) / name
                if path.suffix.lower() in SKIP_SUFFIXES or path.name == "secrets.txt":
                    continue
                found.append(path)
    return found


def pg_dump() -> Path | None:
    url = os.environ.get("CALLSEC_TEST_PG_URL", "")
    if not url:
        return None
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    out = VAR / "test" / "pg_dump.sql"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["pg_dump", "--no-owner", plain], capture_output=True, timeout=120)
    if result.returncode != 0:
        print(f"leak-scan: pg_dump not taken ({result.stderr.decode(errors='replace').strip()[:120]})")
        return None
    out.write_bytes(result.stdout)
    return out


def is_log(path: Path) -> bool:
    return "log" in path.parts or path.suffix in (".log", ".sse", ".txt")


def scrub(data: bytes, sandbox: bool) -> bytes:
    """Blank numbers no caller typed: hex ids, and in Asterisk logs the thread id and source
    location of the line prefix (``VERBOSE[1541][C-0000001a]``, ``manager.c:2405``)."""
    if sandbox:
        data = ASTERISK_SOURCE.sub(b"", ASTERISK_PREFIX.sub(b"", data))
    return HEX_ID.sub(b"", data)


def holds(data: bytes, value: str) -> bool:
    """True when ``value`` occurs as a whole number (no digit right before or after it)."""
    return re.search(rb"(?<![0-9])" + re.escape(value.encode()) + rb"(?![0-9])", data) is not None


def main() -> int:
    values = secrets()
    dump = pg_dump()
    targets = files() + ([dump] if dump else [])
    hits: list[str] = []
    for path in targets:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        data = scrub(data, sandbox="sandbox" in path.parts)
        for value in values:
            if len(value) < 6 and not is_log(path):
                continue
            if holds(data, value):
                hits.append(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
                            f"holds a test secret of {len(value)} characters")
    print(f"leak-scan: {len(values)} secret values, {len(targets)} files scanned, {len(hits)} hit(s)")
    for hit in hits:
        print("LEAK", hit)
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
