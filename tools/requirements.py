"""setup.cfg's dependencies as constraints: the lowest allowed versions, or a check of constraints.txt.

    python tools/requirements.py lowest          # X==lowest of every runtime dependency, and
                                                 # constraints.txt's pins of the dev tools (stdout)
    python tools/requirements.py requires        # setup.cfg's requirements, extras included
    python tools/requirements.py check           # every dependency pinned in constraints.txt, in range
    python tools/requirements.py freeze PYTHON   # constraints.txt from what PYTHON's venv resolved to

`lowest` feeds the CI job that installs the lowest allowed versions (make lowest-check); `freeze`
writes the exact pins of everything setup.cfg pulls in (runtime, dev and hsm extras) and
pyproject.toml's build requirements, with their dependencies, dropping whatever else the venv
holds.
"""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SETUP_CFG = ROOT / "setup.cfg"
PYPROJECT = ROOT / "pyproject.toml"
CONSTRAINTS = ROOT / "constraints.txt"
# extras that pull a companion package of exactly the same version
SAME_VERSION_EXTRAS = {("psycopg", "binary"): "psycopg-binary"}


def _lines(value: str) -> list[str]:
    return [
        line.split("#", 1)[0].strip()
        for line in value.splitlines()
        if line.split("#", 1)[0].strip()
    ]


def runtime_requirements(setup_cfg: Path = SETUP_CFG) -> list[Requirement]:
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    return [Requirement(line) for line in _lines(parser.get("options", "install_requires"))]


def build_requirements(pyproject: Path = PYPROJECT) -> list[Requirement]:
    """pyproject.toml's build-system requires (python -m build --no-isolation uses the venv's)."""
    if not pyproject.exists():
        return []
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return [Requirement(line) for line in data.get("build-system", {}).get("requires", [])]


def all_requirements(setup_cfg: Path = SETUP_CFG, build: bool = True) -> list[Requirement]:
    """install_requires, every extra, and (build) the build system's requirements."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    reqs = runtime_requirements(setup_cfg)
    if parser.has_section("options.extras_require"):
        for _extra, value in parser.items("options.extras_require"):
            reqs += [Requirement(line) for line in _lines(value)]
    return reqs + (build_requirements(setup_cfg.parent / "pyproject.toml") if build else [])


def read_pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    """canonical name -> pinned version of a constraints file (name==version lines)."""
    pins: dict[str, str] = {}
    for line in _lines(path.read_text(encoding="utf-8")):
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"{path.name}: not an exact pin: {line!r}")
        pins[canonicalize_name(name.split("[")[0])] = version.strip()
    return pins


def lowest_pins(reqs: list[Requirement]) -> list[str]:
    """name==lowest allowed version (the version of a >= or == bound) for each requirement."""
    out = []
    for req in reqs:
        lows = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
        if len(lows) != 1:
            raise ValueError(f"setup.cfg: {req} has no single lower bound (>=, == or ~=)")
        out.append(f"{req.name}=={lows[0]}")
        for extra in sorted(req.extras):
            if (canonicalize_name(req.name), extra) in SAME_VERSION_EXTRAS:
                out.append(f"{SAME_VERSION_EXTRAS[canonicalize_name(req.name), extra]}=={lows[0]}")
    return out


def dev_pins(setup_cfg: Path = SETUP_CFG, constraints: Path = CONSTRAINTS) -> list[str]:
    """constraints.txt's pins of the extras' own requirements that are not runtime ones."""
    pins = read_pins(constraints)
    runtime = {canonicalize_name(r.name) for r in runtime_requirements(setup_cfg)}
    names = sorted({canonicalize_name(r.name) for r in all_requirements(setup_cfg)} - runtime)
    return [f"{name}=={pins[name]}" for name in names if name in pins]


def check(setup_cfg: Path = SETUP_CFG, constraints: Path = CONSTRAINTS) -> list[str]:
    """What is wrong between setup.cfg and constraints.txt (empty when they agree)."""
    pins = read_pins(constraints)
    problems = []
    for req in all_requirements(setup_cfg):
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name}: required by setup.cfg, not pinned in {constraints.name}")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}=={pins[name]} is outside setup.cfg's {req.specifier}")
    return problems


def freeze(python: str) -> list[str]:
    """Exact pins of setup.cfg's requirements and their dependencies as installed for PYTHON."""
    script = (
        "import json, importlib.metadata as m\n"
        "print(json.dumps({d.metadata['Name']: [d.version, d.requires or []]"
        " for d in m.distributions()}))"
    )
    raw = subprocess.run([python, "-c", script], check=True, capture_output=True, text=True)
    dists = {canonicalize_name(k): (k, v[0], v[1]) for k, v in json.loads(raw.stdout).items()}
    todo = [(req, frozenset(req.extras)) for req in all_requirements()]
    seen: set[str] = set()
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if name not in dists:
            continue
        key = name + "[" + ",".join(sorted(extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        for line in dists[name][2]:
            sub = Requirement(line)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append((sub, frozenset(sub.extras)))
    names = {key.split("[")[0] for key in seen}
    return [f"{dists[n][0]}=={dists[n][1]}" for n in sorted(names) if n != "callsec-ari"]


def main(argv: list[str]) -> int:
    if argv[:1] == ["lowest"]:
        print("\n".join(lowest_pins(runtime_requirements()) + dev_pins()))
        return 0
    if argv[:1] == ["requires"]:
        print("\n".join(str(req) for req in all_requirements(build=False)))
        return 0
    if argv[:1] == ["check"]:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    if len(argv) == 2 and argv[0] == "freeze":
        header = (
            "# Exact versions of everything setup.cfg pulls in (runtime, dev and hsm extras) and\n"
            "# pyproject.toml's build requirements, with their dependencies.\n"
            "# Used by make venv, CI and the Dockerfile: pip install -c constraints.txt ...\n"
            "# Regenerate after changing setup.cfg: .venv/bin/python tools/requirements.py"
            " freeze .venv/bin/python > constraints.txt\n"
        )
        print(header + "\n".join(freeze(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
