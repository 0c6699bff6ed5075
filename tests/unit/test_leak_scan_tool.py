"""The CI leak scan (tools/leak_scan.py): what counts as a leaked value and what does not."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "leak_scan.py"


@pytest.fixture(scope="module")
def scan() -> ModuleType:
    spec = importlib.util.spec_from_file_location("leak_scan", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def found(scan: ModuleType, line: bytes, value: str, sandbox: bool = False) -> bool:
    return bool(scan.holds(scan.scrub(line, sandbox), value))


@pytest.mark.parametrize("line", [
    b'digits="7692"', b"cvv 7692\n", b"SendDTMF(7692#)", b"[7692]", b'{"cvv": 7692}'])
def test_a_typed_value_in_a_log_line_is_found(scan: ModuleType, line: bytes) -> None:
    assert found(scan, line, "7692")


def test_a_digit_run_inside_a_test_id_is_not_a_leak(scan: ModuleType) -> None:
    cdr = b'"ANSWERED","DOCUMENTATION","carrier-486276920eec403e",""'
    assert not found(scan, cdr.replace(b"48627692", b"ab7692cd"), "7692")
    assert not found(scan, b"sha256 0f3c7692ab7692ee01bd4c55aa", "7692")


def test_a_longer_number_holding_the_value_is_not_a_leak(scan: ModuleType) -> None:
    assert not found(scan, b"uniqueid 1796031035.47692", "7692")
    assert not found(scan, b"code 176921", "7692")


def test_asterisk_thread_ids_and_source_lines_are_not_leaks(scan: ModuleType) -> None:
    line = b"[Nov 30] VERBOSE[7692][C-0000001a] pbx.c:7692 Executing"
    assert not found(scan, line, "7692", sandbox=True)
    assert found(scan, line + b" Read(7692)", "7692", sandbox=True)


def test_a_card_number_is_never_taken_for_a_hex_id(scan: ModuleType) -> None:
    assert found(scan, b"pan=4111111111111111 ok", "4111111111111111")
