"""The built wheel, installed outside the repository, goes from its packaged files to a verified
sandbox call, the way the README's operator section does it.

Runs only when ``CALLSEC_INSTALLED`` names an installed ``callsec`` executable:
``make package-check`` (tools/package-check.sh) builds the sdist and the wheel from it, installs
the wheel (not the source tree) with constraints.txt into a fresh venv under /tmp and runs this
module. Every command runs that executable from a directory outside the repository, with no
``CALLSEC_*`` variable but ``CALLSEC_CONFIG``, which names ``etc/callsec/callsec.conf`` under a
temp dir: the packaged sample as ``callsec install-assets --config-dir`` writes it, with its
state paths made absolute under the same temp dir (the rest of the sample already fits the
sandbox).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from tests.harness.callsec_proc import REPO, CallsecProcess, code_from
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox
from tests.integration.test_verification_sandbox import a_channel, a_var, fresh_mobile, wait_var

INSTALLED = os.environ.get("CALLSEC_INSTALLED", "")

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not INSTALLED, reason="CALLSEC_INSTALLED not set (make package-check)"),
]


def set_keys(text: str, values: Mapping[tuple[str, str], str]) -> str:
    """The INI text with ``key = value`` replaced in the named sections (comments kept)."""
    section = ""
    out = []
    found = set()
    for line in text.splitlines():
        head = re.match(r"\s*\[([^\]]+)\]", line)
        if head:
            section = head.group(1).strip()
        key = re.match(r"\s*([A-Za-z0-9_]+)\s*=", line)
        if key and (section, key.group(1)) in values:
            line = f"{key.group(1)} = {values[section, key.group(1)]}"
            found.add((section, key.group(1)))
        out.append(line)
    missing = set(values) - found
    assert not missing, f"the packaged sample has no {sorted(missing)}"
    return "\n".join(out) + "\n"


class InstalledCallsec(CallsecProcess):
    """``CallsecProcess`` on the installed executable, run from ``workdir/cwd`` (outside the
    repository) with the configuration given only by ``CALLSEC_CONFIG``."""

    @property
    def config(self) -> Path:
        return self.workdir / "etc" / "callsec" / "callsec.conf"

    @property
    def cwd(self) -> Path:
        return self.workdir / "cwd"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CALLSEC_", "PYTHON", "VIRTUAL_ENV"))}
        env["CALLSEC_CONFIG"] = str(self.config)
        return env

    def raw_cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([INSTALLED, *args], env=self.env(), cwd=self.cwd,
                              capture_output=True, text=True, input=stdin, timeout=120)

    async def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [INSTALLED, "run"], env=self.env(), cwd=self.cwd, stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "stderr.log", "ab"))
        await self.wait_registered(timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> InstalledCallsec:
    """install-assets into an /etc-like tree under a temp dir, the sample adjusted."""
    root = tmp_path_factory.mktemp("installed")
    dirs = {name: root / name for name in
            ("cwd", "etc/callsec", "sounds", "asterisk", "systemd", "var/lib/callsec")}
    for path in dirs.values():
        path.mkdir(parents=True)
    proc = InstalledCallsec(root)
    done = proc.raw_cli("install-assets", "--sounds-dir", str(dirs["sounds"]),
                        "--dialplan-dir", str(dirs["asterisk"]),
                        "--systemd-dir", str(dirs["systemd"]),
                        "--config-dir", str(dirs["etc/callsec"]))
    assert done.returncode == 0, done.stderr
    state = dirs["var/lib/callsec"]
    values = {
        ("database", "url"): f"sqlite:///{state / 'callsec.db'}",
        ("crypto", "keyring_dir"): str(state / "keys"),
        ("sms", "outbox_dir"): str(proc.outbox),
        ("logging", "file"): str(proc.log_file),
    }
    sample = proc.config.read_text(encoding="utf-8")
    if re.search(r"(?m)^\[status\]", sample):
        values["status", "socket"] = str(state / "callsec.ctl")
    proc.config.write_text(set_keys(sample, values), encoding="utf-8")
    return proc


def test_the_installed_callsec_imports_from_its_venv_not_the_source_tree() -> None:
    python = Path(INSTALLED).with_name("python")
    origin = subprocess.run([str(python), "-c", "import callsec_ari; print(callsec_ari.__file__)"],
                            capture_output=True, text=True, cwd="/", check=True).stdout.strip()
    assert not Path(origin).is_relative_to(REPO) and "site-packages" in origin, origin


def test_install_assets_puts_prompts_dialplan_unit_and_config_in_place(
        installed: InstalledCallsec) -> None:
    root = installed.workdir
    for name, shipped in {"asterisk/extensions_callsec.conf": "dialplan/extensions_callsec.conf",
                          "systemd/callsec.service": "config/systemd/callsec.service"}.items():
        assert (root / name).read_bytes() == (REPO / shipped).read_bytes(), name
    for lang in ("en", "de"):
        for fmt in ("ulaw", "alaw", "g722", "sln16"):
            assert list((root / "sounds" / lang / "callsec").glob(f"*.{fmt}")), (lang, fmt)
    assert "[ari]" in installed.config.read_text(encoding="utf-8")


def test_the_operator_commands_run_from_the_wheel_with_the_config_in_etc(
        installed: InstalledCallsec) -> None:
    version = installed.raw_cli("--version")
    assert version.returncode == 0 and re.fullmatch(r"callsec \S+\n", version.stdout), version
    check = installed.raw_cli("check-config")
    assert check.returncode == 0, check.stderr
    assert str(installed.config) in check.stdout
    upgrade = installed.raw_cli("db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    init = installed.init_keys()
    assert init.returncode == 0, init.stderr
    assert (installed.workdir / "var" / "lib" / "callsec" / "callsec.db").is_file()
    assert list((installed.workdir / "var" / "lib" / "callsec" / "keys").iterdir())
    assert not (installed.cwd / "config").exists() and not list(installed.cwd.iterdir())


@pytest.fixture
async def running(installed: InstalledCallsec, sandbox: Sandbox) -> AsyncIterator[InstalledCallsec]:
    assert installed.raw_cli("db", "upgrade").returncode == 0
    assert installed.init_keys().returncode == 0
    await installed.start()
    yield installed
    installed.stop()


async def test_the_installed_callsec_run_takes_a_verified_sandbox_call(
        running: InstalledCallsec, carrier: Carrier, ari_a: aiohttp.ClientSession,
        register_secret) -> None:  # type: ignore[no-untyped-def]
    mobile = fresh_mobile()
    ref = running.add_customer(name="Paket Pruefer", mobile=mobile)
    call = await carrier.call("1000", caller_id=mobile)
    await call.wait_up()
    code = code_from(await running.wait_message(1))
    register_secret(code)
    channel = await a_channel(ari_a, mobile, "1000")
    await asyncio.sleep(1.0)
    await call.send_dtmf(code + "#")
    assert await wait_var(ari_a, channel, "CALLSEC_RESULT") == "verified"
    assert await a_var(ari_a, channel, "CALLSEC_CUSTOMER") == ref
    await call.hangup()
    async with asyncio.timeout(10):  # the log file is where the config in etc/ puts it
        while "call finished: verified" not in running.log_text():
            await asyncio.sleep(0.2)
    log = running.log_text()
    assert code not in log and mobile not in log
