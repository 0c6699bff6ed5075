"""Log output operators collect: JSON lines (redacted), journald-friendly stderr, reopening a
log file logrotate moved, and the sd_notify datagrams."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from callsec_ari.logoutput import JournalFormatter, JsonFormatter, reopen_log_files, setup_logging
from callsec_ari.runtime.sdnotify import Notifier, watchdog_interval


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_time_level_logger_call_id_and_the_redacted_message(
        tmp_path: Path, root_restored: None) -> None:
    log_file = tmp_path / "callsec.log"
    setup_logging("INFO", log_file, fmt="json")
    logging.getLogger("callsec_ari.test").info("code %s sent to %s", "482913", "+4915112345678",
                                               extra={"call_id": "1733.42"})
    try:
        raise ValueError("card 4111111111111111 refused")
    except ValueError:
        logging.getLogger("callsec_ari.test").exception("failed")
    lines = log_file.read_text().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["logger"] == "callsec_ari.test"
    assert first["call_id"] == "1733.42" and first["time"].endswith("+00:00")
    assert "code" in first["message"]
    assert "482913" not in lines[0] and "15112345678" not in lines[0]
    assert second["call_id"] == "-" and "ValueError" in second["exc"]
    assert "4111111111111111" not in lines[1]


def test_a_moved_log_file_is_reopened_on_sighup_and_by_itself(
        tmp_path: Path, root_restored: None) -> None:
    log_file = tmp_path / "callsec.log"
    setup_logging("INFO", log_file)
    log = logging.getLogger("callsec_ari.test")
    log.info("before")
    log_file.rename(tmp_path / "callsec.log.1")
    assert reopen_log_files() == 1
    assert log_file.exists()
    log.info("after")
    assert "after" in log_file.read_text() and "before" not in log_file.read_text()
    log_file.rename(tmp_path / "callsec.log.2")
    log.info("moved again")  # logrotate without a signal: WatchedFileHandler notices
    assert "moved again" in log_file.read_text()


def test_journal_lines_have_a_priority_and_no_time_stamp() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "ARI down", None, None)
    record.call_id = "-"
    assert JournalFormatter().format(record) == "<4>WARNING x [-] ARI down"
    assert JsonFormatter().format(record).startswith('{"time": ')


def test_stderr_under_systemd_is_detected_from_journal_stream(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from callsec_ari.logoutput import stderr_is_journal

    st = os.fstat(sys.stderr.fileno())
    assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not stderr_is_journal({"JOURNAL_STREAM": "1:2"})
    assert not stderr_is_journal({})


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_sends_datagrams_to_a_path_or_an_abstract_socket(tmp_path: Path,
                                                                abstract: bool) -> None:
    address = f"@callsec-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + address[1:] if abstract else address)
        assert Notifier.from_env({"NOTIFY_SOCKET": address}).send("READY=1")
        assert server.recv(4096) == b"READY=1"
    assert not Notifier.from_env({}).send("READY=1")


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000",
                              "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({}) is None
