"""The container files, checked by reading: the callsec image is non-root with a /healthz
HEALTHCHECK, builds on a base pinned by digest with pinned Debian packages and constrained pip
installs, every COPY source exists, docker-compose.yml is valid YAML whose references (secrets,
volumes, services, CALLSEC_* keys) resolve, and no file names a registry host. The callsec image
is also built and run by CI (tools/container-check.sh, tests/integration/test_container_sandbox.py)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from callsec_ari.config import SECTIONS, PolicySettings
from callsec_ari.config_check import load_settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = [REPO / "Dockerfile", REPO / "docker" / "asterisk" / "Dockerfile"]
COMPOSE = REPO / "docker-compose.yml"
#: A DNS name (something.tld with a common public TLD): none belongs in these files.
_HOST_NAME = re.compile(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|io|org|net|dev|cloud|app)\b",
                        re.IGNORECASE)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_callsec_image_runs_as_an_unprivileged_user() -> None:
    users = [args for word, args in instructions(REPO / "Dockerfile") if word == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")


def test_callsec_image_checks_its_health_on_healthz() -> None:
    checks = [args for word, args in instructions(REPO / "Dockerfile") if word == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/healthz" in checks[0] and "8080" in checks[0]


def base_default(path: Path) -> str:
    """The default of the Dockerfile's ``ARG BASE=...``."""
    return next(a.split("=", 1)[1] for w, a in instructions(path)
                if w == "ARG" and a.startswith("BASE="))


def test_callsec_image_builds_on_a_debian_base_pinned_by_digest_and_runs_callsec_run() -> None:
    steps = instructions(REPO / "Dockerfile")
    assert [a for w, a in steps if w == "FROM"] == ["${BASE} AS wheel", "${BASE}"]
    # users build on Debian's image pinned by digest; CI passes BASE=localhost/base:bookworm
    assert re.fullmatch(r"debian:bookworm-\d{8}-slim@sha256:[0-9a-f]{64}",
                        base_default(REPO / "Dockerfile"))
    entry = next(a for w, a in steps if w == "ENTRYPOINT")
    cmd = next(a for w, a in steps if w == "CMD")
    assert '"callsec"' in entry and cmd == '["run"]'


def test_callsec_image_pins_its_debian_packages_but_the_ca_certificates() -> None:
    installs = [a for w, a in instructions(REPO / "Dockerfile")
                if w == "RUN" and "apt-get install" in a]
    assert installs
    for run in installs:
        words = run.split("apt-get install", 1)[1].split("&&")[0].split()
        packages = [w for w in words if not w.startswith("-")]
        assert packages
        for package in packages:
            assert "=" in package or package == "ca-certificates", package


def test_callsec_image_installs_python_packages_with_the_constraints_file() -> None:
    steps = instructions(REPO / "Dockerfile")
    assert any(w == "COPY" and "constraints.txt" in a.split() for w, a in steps)
    pip_runs = [a for w, a in steps if w == "RUN" and ("pip install" in a or "pip wheel" in a)]
    assert len(pip_runs) == 2  # the wheel (build stage) and its installation
    assert pip_runs and all("-c constraints.txt" in run for run in pip_runs)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_copy_source_exists(dockerfile: Path) -> None:
    for word, args in instructions(dockerfile):
        if word == "COPY" and "--from=" not in args:
            parts = [p for p in args.split() if not p.startswith("--")]
            for source in parts[:-1]:
                assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source}"


def _image_refs() -> list[str]:
    refs = [args.split()[0] for path in DOCKERFILES
            for word, args in instructions(path) if word == "FROM" and "$" not in args]
    refs.append(base_default(REPO / "Dockerfile"))
    refs += [svc["image"] for svc in compose()["services"].values() if "image" in svc]
    return refs


@pytest.mark.parametrize("ref", _image_refs())
def test_image_references_name_no_registry_host(ref: str) -> None:
    first = ref.split("/")[0]
    assert "/" not in ref or not ("." in first or ":" in first or first == "localhost"), ref


@pytest.mark.parametrize("path", [*DOCKERFILES, COMPOSE, REPO / "docker" / "asterisk" /
                                  "entrypoint.sh", REPO / ".dockerignore"],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_container_files_name_no_host(path: Path) -> None:
    assert _HOST_NAME.findall(path.read_text(encoding="utf-8")) == []


def test_compose_has_callsec_postgres_and_asterisk_built_here() -> None:
    services = compose()["services"]
    assert set(services) == {"callsec", "callsec-migrate", "callsec-keys", "postgres",
                             "asterisk"}
    assert services["callsec"]["build"]["context"] == "."
    asterisk_build = services["asterisk"]["build"]
    assert (REPO / asterisk_build["context"] / asterisk_build["dockerfile"]).is_file()
    assert services["callsec"]["network_mode"] == "service:asterisk"
    assert set(services["callsec"]["depends_on"]) == {"asterisk", "postgres", "callsec-keys"}
    # keys are created only on purpose: a one-shot `callsec keys init` before callsec starts
    assert services["callsec-keys"]["command"] == ["keys", "init"]
    # only run and db upgrade migrate: the one-shot `db upgrade` runs before keys init
    assert services["callsec-migrate"]["command"] == ["db", "upgrade"]
    assert services["callsec-keys"]["depends_on"]["callsec-migrate"]["condition"] == \
        "service_completed_successfully"
    assert services["callsec"]["depends_on"]["callsec-keys"]["condition"] == \
        "service_completed_successfully"


def test_compose_references_resolve() -> None:
    data = compose()
    declared_secrets, declared_volumes = set(data["secrets"]), set(data["volumes"])
    for name, service in data["services"].items():
        assert set(service.get("secrets", [])) <= declared_secrets, name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name}: volume {source}"
    for secret in data["secrets"].values():
        assert secret["file"].startswith("./secrets/")


def test_compose_environment_names_real_config_keys() -> None:
    keys = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in SECTIONS.items()}
    policy_keys = {f.name for f in dataclasses.fields(PolicySettings)}
    env = compose()["services"]["callsec"]["environment"]
    assert env
    for variable in env:
        match = re.fullmatch(r"CALLSEC_([A-Z0-9_]+?)__([A-Z0-9_]+?)(_FILE)?", variable)
        assert match, variable
        section, key = match.group(1).lower(), match.group(2).lower()
        allowed = policy_keys if section.startswith("policy_") else keys.get(section, set())
        assert key in allowed, variable


def test_container_config_defaults_load() -> None:
    settings = load_settings(REPO / "docker" / "callsec.conf", env={})
    assert settings.web.host == "0.0.0.0"
    assert settings.ari.urls == ("http://127.0.0.1:8088",)
    # relative paths would follow the file into /etc/callsec: state lives in the volume
    assert settings.crypto.keyring_dir == Path("/var/lib/callsec/var/keys")
    assert settings.sms.outbox_dir == Path("/var/lib/callsec/var/outbox")
    assert str(settings.database.url) == "sqlite:////var/lib/callsec/var/callsec.db"


def test_asterisk_entrypoint_is_valid_posix_sh() -> None:
    script = REPO / "docker" / "asterisk" / "entrypoint.sh"
    assert script.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n", str(script)], check=True)
