"""The built wheel and sdist carry the operator assets, and `callsec install-assets` run from
the wheel (not the source tree) puts them where Asterisk, systemd and the operator look.

One build (sdist, then the wheel from the sdist, as `python -m build` does) serves the module:
about 30 s. The wheel is unpacked into a temp dir and put first on PYTHONPATH, so the CLI
imports callsec_ari from the wheel; its dependencies come from the venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import wave
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import G722  # type: ignore[import-not-found]
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FORMATS = ("ulaw", "alaw", "g722", "sln16")
LANGS = ("en", "de")


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path
    unpacked: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheel = next(out.glob("callsec_ari-*.whl"))
    sdist = next(out.glob("callsec_ari-*.tar.gz"))
    unpacked = tmp_path_factory.mktemp("wheel")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(unpacked)
    yield Built(wheel, sdist, unpacked)


def masters(lang: str) -> list[Path]:
    return sorted((REPO / "sounds" / lang / "callsec").glob("*.wav"))


def callsec(built: Built, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSEC_")}
    env["PYTHONPATH"] = str(built.unpacked)
    return subprocess.run([sys.executable, "-m", "callsec_ari", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_wheel_contains_every_prompt_in_four_formats_and_the_operator_files(
        built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    data = "callsec_ari/data"
    for lang in LANGS:
        for master in masters(lang):
            for ext in FORMATS:
                assert f"{data}/sounds/{lang}/callsec/{master.stem}.{ext}" in names
    for digit in range(10):
        assert f"{data}/sounds/de/digits/{digit}.g722" in names
    for path in ("dialplan/extensions_callsec.conf", "config/callsec.conf.sample",
                 "systemd/callsec.service", "LICENSE"):
        assert f"{data}/{path}" in names
    assert any(n.endswith(("dist-info/licenses/LICENSE", "dist-info/LICENSE")) for n in names)


def test_sdist_contains_the_master_prompts_dialplan_unit_sample_and_license(
        built: Built) -> None:
    with tarfile.open(built.sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for lang in LANGS:
        for master in masters(lang):
            assert f"sounds/{lang}/callsec/{master.name}" in names
    for path in ("dialplan/extensions_callsec.conf", "config/callsec.conf.sample",
                 "config/systemd/callsec.service", "LICENSE", "setup.py",
                 "sounds/texts/en.txt", "sounds/de/digits/0.wav"):
        assert path in names


def raw_seconds(path: Path, rate: int, kind: str) -> float:
    """Duration by sox decoding the headerless file as Asterisk reads it (type, rate, mono)."""
    sample = ["-b", "16", "-e", "signed-integer", "-L"] if kind == "raw" else []
    out = subprocess.run(["sox", "-t", kind, "-r", str(rate), "-c", "1", *sample, str(path),
                          "-n", "stat"], capture_output=True, text=True, check=True)
    line = next(ln for ln in out.stderr.splitlines() if ln.startswith("Length (seconds)"))
    return float(line.split(":")[1])


def test_install_assets_from_the_wheel_puts_playable_prompts_where_asterisk_looks(
        built: Built, tmp_path: Path) -> None:
    sounds, dialplan, systemd, conf = (tmp_path / d for d in ("sounds", "ast", "sd", "etc"))
    for d in (sounds, dialplan, systemd, conf):
        d.mkdir()
    args = ("install-assets", "--sounds-dir", str(sounds), "--dialplan-dir", str(dialplan),
            "--systemd-dir", str(systemd), "--config-dir", str(conf))
    # no config anywhere, cwd outside the repository: the command needs none
    first = callsec(built, tmp_path, *args)
    assert first.returncode == 0, first.stderr
    for lang in LANGS:
        for master in masters(lang):
            with wave.open(str(master)) as w:
                seconds = w.getnframes() / w.getframerate()
            base = sounds / lang / "callsec" / master.stem
            for ext, rate, kind in (("ulaw", 8000, "ul"), ("alaw", 8000, "al"),
                                    ("sln16", 16000, "raw")):
                assert abs(raw_seconds(base.with_suffix(f".{ext}"), rate, kind) - seconds) < 0.01
            # G.722: 64 kbit/s, 8000 bytes a second like G.711
            assert abs(base.with_suffix(".g722").stat().st_size / 8000 - seconds) < 0.01
            assert oct(base.with_suffix(".ulaw").stat().st_mode & 0o777) == "0o644"
    assert (sounds / "de" / "digits" / "7.sln16").is_file()
    # the G.722 stream decodes to the same speech as the 16 kHz linear file (level within 10%)
    base = sounds / "en" / "callsec" / "welcome"
    decoded = np.asarray(G722.G722(16000, 64000).decode(base.with_suffix(".g722").read_bytes()),
                         dtype=np.float64)
    linear = np.frombuffer(base.with_suffix(".sln16").read_bytes(), dtype="<i2").astype(float)
    assert len(decoded) == len(linear)
    assert abs(np.sqrt(np.mean(decoded**2)) / np.sqrt(np.mean(linear**2)) - 1) < 0.1
    assert (dialplan / "extensions_callsec.conf").read_text() == \
        (REPO / "dialplan" / "extensions_callsec.conf").read_text()
    assert (systemd / "callsec.service").read_text() == \
        (REPO / "config" / "systemd" / "callsec.service").read_text()
    assert (conf / "callsec.conf").read_text() == \
        (REPO / "config" / "callsec.conf.sample").read_text()

    # idempotent: the same files again; the operator's edited config is kept
    (conf / "callsec.conf").write_text("[ari]\n# edited by the operator\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    second = callsec(built, tmp_path, *args)
    assert second.returncode == 0, second.stderr
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert set(after) - set(before) == {Path("etc/callsec.conf.sample")}
    assert (conf / "callsec.conf").read_text() == "[ari]\n# edited by the operator\n"
    assert "kept" in second.stdout


def test_install_assets_keeps_digits_an_asterisk_package_installed(
        built: Built, tmp_path: Path) -> None:
    digits = tmp_path / "sounds" / "de" / "digits"
    digits.mkdir(parents=True)
    (digits / "0.gsm").write_bytes(b"studio")
    (tmp_path / "ast").mkdir()
    done = callsec(built, tmp_path, "install-assets", "--sounds-dir", str(tmp_path / "sounds"),
                   "--dialplan-dir", str(tmp_path / "ast"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in digits.iterdir()) == ["0.gsm"]
    assert (tmp_path / "sounds" / "de" / "callsec" / "welcome.alaw").is_file()


def test_install_assets_into_a_missing_directory_is_a_usage_error(
        built: Built, tmp_path: Path) -> None:
    done = callsec(built, tmp_path, "install-assets", "--sounds-dir", str(tmp_path / "nope"),
                   "--dialplan-dir", str(tmp_path))
    assert done.returncode == 2
    assert "--sounds-dir" in done.stderr and "Traceback" not in done.stderr
