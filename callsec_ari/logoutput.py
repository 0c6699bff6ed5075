"""Where log lines go and in what shape: text or one JSON object per line, a log file that
logrotate may move (reopened when moved and on SIGHUP), or stderr for journald.

The handlers built here carry :class:`callsec_ari.logs.RedactingFilter` (added by
:func:`setup_logging`), so a message is redacted before any formatter sees it; the JSON formatter
also redacts an exception's text, which no filter reaches.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from callsec_ari.logs import RedactingFilter, redact_text

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(call_id)s] %(message)s"
#: journald stamps every line itself: no second time stamp.
JOURNAL_FORMAT = "%(levelname)s %(name)s [%(call_id)s] %(message)s"
#: sd-daemon(3) priority prefixes, which journald reads from a service's stderr.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, call_id, message (and
    ``exc``, redacted, when an exception is logged)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "call_id": getattr(record, "call_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class JournalFormatter(logging.Formatter):
    """Text without a time stamp, prefixed with the line's syslog priority (``<6>``)."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        return f"<{priority}>" + super().format(record).replace("\n", "\n  ")


def stderr_is_journal(env: dict[str, str] | None = None) -> bool:
    """systemd connected stderr to the journal (``$JOURNAL_STREAM`` names its device:inode)."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def build_handler(file: Path | None, fmt: str = "text") -> logging.Handler:
    """A file handler that reopens the file when logrotate moved it (``WatchedFileHandler``),
    or stderr when no file is configured."""
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.WatchedFileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif file is None and stderr_is_journal():
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def reopen_log_files() -> int:
    """SIGHUP: close and reopen every log file (after logrotate moved it); returns how many."""
    count = 0
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
            finally:
                handler.release()
            count += 1
    return count


def setup_logging(level: str = "INFO", file: Path | None = None,
                  extra_handlers: Mapping[str, logging.Handler] | None = None,
                  fmt: str = "text") -> None:
    """The root logger's one handler: ``file`` (reopened when moved and on SIGHUP) or stderr
    (journald-friendly), ``fmt`` ``text`` or ``json`` (see above)."""
    handler = build_handler(file, fmt)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    for extra in (extra_handlers or {}).values():
        extra.addFilter(RedactingFilter())
        root.addHandler(extra)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
