"""Checks for the capture sandbox tests: audio (Goertzel over WAVs: key tones, a pure test
tone, loudness) and leaks (whole-number searches in logs, the database, channel variables)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tests.harness.goertzel import BLOCK, _blocks, detect_dtmf, goertzel_ratios, read_wav
from tests.harness.sandbox import ASTERISK_ROOT, A, B

# --- audio ----------------------------------------------------------------------------------------

def tone_runs(path: Path, hz: float, *, min_ratio: float = 0.6,
              min_seconds: float = 0.2) -> list[tuple[float, float]]:
    """(start, end) seconds of stretches where a pure ``hz`` tone dominates the audio."""
    samples, rate = read_wav(path)
    hop = BLOCK // 2
    frames = _blocks(samples, BLOCK, hop)
    if not len(frames):
        return []
    ratios = goertzel_ratios(frames, [hz], rate)[:, 0]
    level = 10 * np.log10(np.maximum(np.mean(frames * frames, axis=1), 1e-20))
    hit = (ratios > min_ratio) & (level > -40)
    runs: list[tuple[float, float]] = []
    start: int | None = None
    for i, on in enumerate([*hit.tolist(), False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            if (i - start) * hop / rate >= min_seconds:
                runs.append((start * hop / rate, (i * hop + BLOCK) / rate))
            start = None
    return runs


def loud_seconds(path: Path, start: float, end: float, *, dbfs: float = -45.0) -> float:
    """Seconds of audio above ``dbfs`` (20 ms windows) between ``start`` and ``end``."""
    samples, rate = read_wav(path)
    window = rate // 50
    part = samples[int(max(start, 0) * rate):int(max(end, 0) * rate)]
    count = len(part) // window
    if count == 0:
        return 0.0
    power = np.mean(part[: count * window].reshape(count, window) ** 2, axis=1)
    return float(np.sum(10 * np.log10(np.maximum(power, 1e-20)) > dbfs) * window / rate)


def dtmf_hits(path: Path, start: float = 0.0, end: float = 1e9) -> list[tuple[float, str]]:
    samples, rate = read_wav(path)
    return [(t, k) for t, k in detect_dtmf(samples, rate) if start <= t <= end]


# --- leaks ----------------------------------------------------------------------------------------

def whole_number(value: str) -> re.Pattern[bytes]:
    """A whole number: no digit, letter, '.', ',', ':' or '-' right before or after it
    (the milliseconds of timestamps, unique ids and hex ids do not count as a short CVV)."""
    return re.compile(rb"(?<![0-9A-Za-z.,:\-])" + re.escape(value.encode()) +
                      rb"(?![0-9A-Za-z.,:\-])")


def find_leaks(values: Sequence[str], blobs: dict[str, bytes]) -> list[str]:
    hits = []
    for value in values:
        pattern = whole_number(value)
        for where, blob in blobs.items():
            if pattern.search(blob):
                hits.append(f"{where}: <{len(value)} chars>")
    return hits


def sqlite_dump(db: Path) -> bytes:
    """Every row of the database as SQL text (WAL included) plus the raw files."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        text = "\n".join(conn.iterdump()).encode()
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file())
    return text + b"\n" + raw


def channel_variables(name: str) -> bytes:
    """``core show channel NAME`` on A (the variables section included), as root."""
    conf = "/srv/callsec/a/etc/asterisk.conf"
    result = subprocess.run(["chroot", str(ASTERISK_ROOT), "asterisk", "-C", conf, "-rx",
                             f"core show channel {name}"], capture_output=True, timeout=20)
    return result.stdout


class LogTail:
    """The bytes appended to a file since the tail was taken."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def read(self) -> bytes:
        if not self.path.exists():
            return b""
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            return fh.read()


def asterisk_logs() -> list[Path]:
    return [p for inst in (A, B) if inst.log_dir.exists()
            for p in inst.log_dir.iterdir() if p.is_file()]
