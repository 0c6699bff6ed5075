"""Verification results the database could not take are written once it can (LateRecords)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from callsec_ari.core.errors import InvalidInput
from callsec_ari.store.errors import DatabaseUnavailable
from callsec_ari.verification.late import LateRecords


class Database:
    """A stand-in for the store: down until ``up`` is set; records what was written."""

    def __init__(self) -> None:
        self.up = False
        self.rows: list[str] = []

    def writer(self, row: str) -> Callable[[], None]:
        def write() -> None:
            if not self.up:
                raise DatabaseUnavailable("db.example", "unreachable")
            self.rows.append(row)
        return write


def test_results_wait_while_the_database_is_down_and_are_written_in_order_once_it_is_back(
        caplog: pytest.LogCaptureFixture) -> None:
    db, late = Database(), LateRecords()
    late.add("call-1", db.writer("one"))
    late.add("call-2", db.writer("two"))
    assert late.attempt_all() == 0 and len(late) == 2 and db.rows == []
    db.up = True
    with caplog.at_level(logging.INFO):
        assert late.attempt_all() == 2
    assert db.rows == ["one", "two"] and len(late) == 0
    assert [r.call_id for r in caplog.records if "recorded late" in r.message] == \
        ["call-1", "call-2"]
    assert late.attempt_all() == 0 and db.rows == ["one", "two"]  # nothing written twice


def test_two_results_of_one_call_are_both_kept() -> None:
    db, late = Database(), LateRecords()
    late.add("call-1", db.writer("first"))
    late.add("call-1", db.writer("second"))
    db.up = True
    assert late.attempt_all() == 2 and db.rows == ["first", "second"]


def test_a_result_the_database_refuses_for_another_reason_is_dropped_not_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    db, late = Database(), LateRecords()
    db.up = True

    def refused() -> None:
        raise InvalidInput("no such customer")

    late.add("call-1", refused)
    late.add("call-2", db.writer("two"))
    assert late.attempt_all() == 1 and db.rows == ["two"]
    assert len(late) == 0 and late.dropped == 1
    assert "could not be recorded late: invalid_input" in caplog.text


def test_over_the_limit_the_oldest_result_is_dropped_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    db, late = Database(), LateRecords(limit=2)
    for n in range(3):
        late.add(f"call-{n}", db.writer(str(n)))
    assert len(late) == 2 and late.dropped == 1
    assert [r.call_id for r in caplog.records] == ["call-0"]
    db.up = True
    assert late.attempt_all() == 2 and db.rows == ["1", "2"]
