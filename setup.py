"""Build hook: the operator assets inside the package, prompts in Asterisk's native formats.

Metadata stays in setup.cfg. ``build_py`` additionally writes ``callsec_ari/data/`` into the
build tree (never into the repository):

- ``sounds/<lang>/callsec/<name>.{ulaw,alaw,g722,sln16}`` and ``sounds/de/digits/<n>.*``: the
  committed master WAVs (``sounds/``, 8 kHz 16-bit mono) converted by sox into the formats
  Asterisk plays without transcoding: G.711 mu-law and A-law (8 kHz), 16 kHz signed linear, and
  G.722 (sox resamples to 16 kHz; the G.722 bits come from the ``G722`` codec library, as sox
  has no G.722 encoder);
- ``dialplan/*.conf``, ``config/callsec.conf.sample``, ``systemd/callsec.service``, ``LICENSE``.

``callsec install-assets`` copies them where Asterisk, systemd and the operator want them. The
build fails with a clear message when sox or the G722 module is missing.
"""

from __future__ import annotations

import array
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
#: Asterisk's file extension -> sox output options (raw, no header; sln16 little-endian).
SOX_FORMATS = {
    "ulaw": ["-r", "8000", "-c", "1", "-t", "ul"],
    "alaw": ["-r", "8000", "-c", "1", "-t", "al"],
    "sln16": ["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", "-L", "-t", "raw"],
}
#: The copied files: source in the repository -> place under callsec_ari/data.
COPIED = {
    "dialplan/extensions_callsec.conf": "dialplan/extensions_callsec.conf",
    "config/callsec.conf.sample": "config/callsec.conf.sample",
    "config/systemd/callsec.service": "systemd/callsec.service",
    "LICENSE": "LICENSE",
}


def fail(message: str) -> None:
    sys.exit(f"callsec build: {message}")


def sox(source: Path, options: list[str]) -> bytes:
    # -D: no dither, so a rebuild yields the same bytes
    done = subprocess.run(["sox", "-D", str(source), *options, "-"], capture_output=True,
                          check=False)
    if done.returncode != 0:
        fail(f"sox failed on {source}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def g722(source: Path) -> bytes:
    try:
        import G722  # type: ignore[import-not-found]
    except ImportError:
        fail("the G722 module is missing (pip install G722; setup needs it for the .g722 prompts)")
    samples = array.array("h", sox(source, SOX_FORMATS["sln16"]))
    if sys.byteorder != "little":
        samples.byteswap()
    return bytes(G722.G722(16000, 64000).encode(samples))


def convert_prompts(sounds: Path, target: Path) -> int:
    if shutil.which("sox") is None:
        fail("sox is not installed (apt-get install sox); it converts the prompts at build time")
    masters = sorted(sounds.glob("*/callsec/*.wav")) + sorted(sounds.glob("*/digits/*.wav"))
    if not masters:
        fail(f"no prompts under {sounds} (*/callsec/*.wav)")
    for master in masters:
        out = target / master.relative_to(sounds).parent
        out.mkdir(parents=True, exist_ok=True)
        for ext, options in SOX_FORMATS.items():
            (out / f"{master.stem}.{ext}").write_bytes(sox(master, options))
        (out / f"{master.stem}.g722").write_bytes(g722(master))
    return len(masters)


class BuildPyWithAssets(build_py):  # type: ignore[misc]
    """build_py, then callsec_ari/data/ in the build tree (not for editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        data = Path(self.build_lib) / "callsec_ari" / "data"
        if data.exists():
            shutil.rmtree(data)
        count = convert_prompts(HERE / "sounds", data / "sounds")
        for source, dest in COPIED.items():
            (data / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HERE / source, data / dest)
        print(f"callsec build: {count} prompts in ulaw, alaw, g722, sln16; "
              f"{len(COPIED)} files into {data}")


setup(cmdclass={"build_py": BuildPyWithAssets})
