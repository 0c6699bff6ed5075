"""constraints.txt pins every dependency setup.cfg names, inside setup.cfg's ranges; the lowest
allowed versions (make lowest-check) are what setup.cfg's lower bounds say."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "requirements.py"


@pytest.fixture(scope="module")
def reqs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("requirements_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_dependency_of_setup_cfg_is_pinned_in_constraints_txt(reqs: ModuleType) -> None:
    assert reqs.check() == []


def test_constraints_txt_holds_only_exact_pins(reqs: ModuleType) -> None:
    pins = reqs.read_pins(REPO / "constraints.txt")
    assert pins and all(version for version in pins.values())


def test_a_dependency_without_a_pin_is_reported(reqs: ModuleType, tmp_path: Path) -> None:
    cfg = tmp_path / "setup.cfg"
    cfg.write_text("[options]\ninstall_requires =\n    aiohttp>=3.9\n    numpy>=1.26\n"
                   "[options.extras_require]\ndev =\n    pytest>=8\n")
    pins = tmp_path / "constraints.txt"
    pins.write_text("# pins\naiohttp==3.9.5\npytest==7.4.0\n")
    assert reqs.check(cfg, pins) == [
        "numpy: required by setup.cfg, not pinned in constraints.txt",
        "pytest==7.4.0 is outside setup.cfg's >=8",
    ]


def test_lowest_pins_take_each_lower_bound_and_the_extras_companion(reqs: ModuleType) -> None:
    from packaging.requirements import Requirement

    got = reqs.lowest_pins([Requirement("psycopg[binary]>=3.1.4"), Requirement("aiohttp>=3.9,<4"),
                            Requirement("panoramisk==1.4")])
    assert got == ["psycopg==3.1.4", "psycopg-binary==3.1.4", "aiohttp==3.9", "panoramisk==1.4"]


def test_every_runtime_dependency_has_a_lower_bound(reqs: ModuleType) -> None:
    assert len(reqs.lowest_pins(reqs.runtime_requirements())) >= len(reqs.runtime_requirements())
