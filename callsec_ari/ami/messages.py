"""AMI value types: events, subscriptions and ``GetConfig`` categories."""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from callsec_ari.ami.errors import AmiConnectionError

__all__ = ["AmiEvent", "AmiSubscription", "ConfigCategory", "parse_config"]

_CONFIG_KEY = re.compile(r"^(Category|Templates|Line)-(\d+)(?:-(\d+))?$", re.IGNORECASE)


@dataclass(frozen=True)
class AmiEvent:
    """One AMI event. ``headers`` may hold digits (``DTMFEnd``'s ``Digit``): never log them."""

    name: str
    headers: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True)
class ConfigCategory:
    """One ``[section]`` of a file read with ``GetConfig`` (template variables included)."""

    name: str
    items: tuple[tuple[str, str], ...]
    templates: tuple[str, ...] = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        """The last value of ``key`` (Asterisk's modules apply options in order)."""
        found = [v for k, v in self.items if k.lower() == key.lower()]
        return found[-1] if found else default

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.items if k.lower() == key.lower()]


def parse_config(message: Mapping[str, Any]) -> list[ConfigCategory]:
    """``GetConfig``'s ``Category-N`` / ``Templates-N`` / ``Line-N-M: key=value`` headers."""
    names: dict[int, str] = {}
    templates: dict[int, tuple[str, ...]] = {}
    lines: dict[int, list[tuple[int, str, str]]] = {}
    for header, value in message.items():
        match = _CONFIG_KEY.match(header)
        if match is None:
            continue
        kind, index = match.group(1).lower(), int(match.group(2))
        if kind == "category":
            names[index] = str(value)
        elif kind == "templates":
            templates[index] = tuple(t.strip() for t in str(value).split(",") if t.strip())
        else:
            key, _, val = str(value).partition("=")
            lines.setdefault(index, []).append((int(match.group(3) or 0), key.strip(),
                                                val.strip()))
    return [ConfigCategory(name=names[i],
                           items=tuple((k, v) for _, k, v in sorted(lines.get(i, []))),
                           templates=templates.get(i, ()))
            for i in sorted(names)]


class AmiSubscription:
    """Events whose name matches one of the patterns (``fnmatch``, case-insensitive).

    Use as a context manager (unsubscribes on exit); ``await get()`` or ``async for``. When more
    than ``maxsize`` events wait, the oldest are dropped (counted in :attr:`dropped`). A lost
    connection ends the stream with :class:`AmiConnectionError`.
    """

    def __init__(self, patterns: tuple[str, ...], maxsize: int,
                 unsubscribe: Callable[[AmiSubscription], None]) -> None:
        self._regex = re.compile("|".join(fnmatch.translate(p) for p in patterns), re.IGNORECASE)
        self._queue: deque[AmiEvent] = deque(maxlen=maxsize)
        self._changed = asyncio.Event()
        self._error: AmiConnectionError | None = None
        self._unsubscribe = unsubscribe
        self.dropped = 0

    def matches(self, name: str) -> bool:
        return self._regex.match(name) is not None

    def put(self, event: AmiEvent) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        self._changed.set()

    def fail(self, error: AmiConnectionError) -> None:
        self._error = error
        self._changed.set()

    def pending(self) -> list[AmiEvent]:
        """The events received so far and not yet taken (taken now)."""
        events = list(self._queue)
        self._queue.clear()
        return events

    async def get(self) -> AmiEvent:
        while not self._queue:
            if self._error is not None:
                raise self._error
            self._changed.clear()
            await self._changed.wait()
        return self._queue.popleft()

    def __aiter__(self) -> AmiSubscription:
        return self

    async def __anext__(self) -> AmiEvent:
        return await self.get()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._unsubscribe(self)
