"""Group commit: the work items of concurrent writers (threads) done in one transaction.

The first writer to find no group running writes every item queued by then (its own first)
and hands the lead to the first writer queued meanwhile; the others wait for their group. A
writer returns its own result once its group has committed. When a group fails, each of its
items is written alone, so an item's error reaches its own writer only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
Item = TypeVar("Item")
Result = TypeVar("Result")


class _Pending(Generic[Item, Result]):
    __slots__ = ("error", "event", "item", "lead", "result")

    def __init__(self, item: Item) -> None:
        self.item, self.lead = item, False
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.event = threading.Event()


class GroupCommit(Generic[Item, Result]):
    """``write(items) -> results`` (one transaction, results in the items' order)."""

    def __init__(self, write: Callable[[list[Item]], list[Result]]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._queue: list[_Pending[Item, Result]] = []
        self._busy = False

    def submit(self, item: Item) -> Result:
        mine: _Pending[Item, Result] = _Pending(item)
        with self._lock:
            self._queue.append(mine)
            wait, self._busy = self._busy, True
        if wait:
            mine.event.wait()
        if mine.lead or not wait:
            self._lead()
        if mine.error is not None:
            raise mine.error
        assert mine.result is not None
        return mine.result

    def _lead(self) -> None:
        with self._lock:
            group, self._queue = self._queue, []
        try:
            self._run(group)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].event.set()
                else:
                    self._busy = False
            for pending in group:
                pending.event.set()

    def _run(self, group: list[_Pending[Item, Result]]) -> None:
        if len(group) > 1:
            try:
                for pending, result in zip(group, self._write([p.item for p in group]),
                                           strict=True):
                    pending.result = result
                return
            except Exception:
                log.debug("a group of %s failed; writing its items one by one", len(group))
        for pending in group:
            try:
                pending.result = self._write([pending.item])[0]
            except BaseException as exc:  # handed to its own writer, raised there
                pending.error = exc
