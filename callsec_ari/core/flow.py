"""What every call flow offers the dispatcher, and the transition table that is its diagram.

A flow is a pure object: ``handle(event) -> list[Command]``. Its transitions are one
:class:`Table` per flow (h11's ``_state.py``): each entry ``(state, event type) -> handler,
next states`` names where the call may go. A handler returns ``(next state, commands)`` and
never assigns the state itself; a next state the entry does not name is a bug
(:class:`FlowError`). ``Table.on`` is typed, so mypy checks each handler against its event
type. The table's ``ignored`` events are dropped in any state without an entry (listed once);
any other event the table does not allow raises :class:`FlowError` naming the call id, the
state and the event (the dispatcher logs it on the call's logger and ends that call).
``callsec flows --dot`` draws every table (``callsec_ari/flows.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Generic, Protocol, TypeAlias, TypeVar, runtime_checkable

from callsec_ari.core.commands import Command
from callsec_ari.core.errors import FlowError
from callsec_ari.core.events import Event

S = TypeVar("S", bound=Enum)
F = TypeVar("F")
E = TypeVar("E", bound=Event)

#: Source state for transitions allowed in every non-final state, e.g. ``(ANY, CallerHungUp)``.
ANY = "*"

#: What a handler returns: the next state (one its table entry names) and the commands.
Step: TypeAlias = tuple[S, list[Command]]


class Flow(Protocol):
    call_id: str

    @property
    def done(self) -> bool: ...

    @property
    def state_name(self) -> str: ...

    def handle(self, event: Event) -> list[Command]: ...


@runtime_checkable
class CaptureHost(Protocol):
    """A flow that hosts captures (``connect``), as the capture slice sees it: captures start
    only while it is ``hosting``; ``capture`` is the running route or the one that ended last
    (a ``capture.steering.CaptureSteering``)."""

    @property
    def hosting(self) -> bool: ...

    @property
    def capture(self) -> object | None: ...


@dataclass(frozen=True)
class Edge(Generic[S]):
    handler: Callable[[Any, Any], tuple[S, list[Command]]]
    targets: frozenset[S]


class Table(Generic[F, S]):
    """``(state, event type) -> (handler, next states)`` for one flow class ``F``."""

    def __init__(self, states: type[S], *, final: Iterable[S],
                 ignored: Iterable[type[Event]] = ()) -> None:
        self.states = states
        self.final = frozenset(final)
        self.ignored = tuple(ignored)
        self.edges: dict[tuple[S | str, type[Event]], Edge[S]] = {}

    def on(self, source: S | tuple[S, ...] | str, event: type[E],
           handler: Callable[[F, E], tuple[S, list[Command]]], *to: S) -> None:
        """``handler`` runs for ``event`` in ``source`` (a state, several, or :data:`ANY`) and
        leads to one of ``to`` (staying in the source state is always allowed)."""
        sources = source if isinstance(source, tuple) else (source,)
        for state in sources:
            if (state, event) in self.edges:
                raise ValueError(f"duplicate transition ({state}, {event.__name__})")
            self.edges[(state, event)] = Edge(handler, frozenset(to))

    def transitions(self) -> dict[tuple[S, S], list[str]]:
        """``(from, to) -> event names``: the state diagram (:data:`ANY` spelt out)."""
        states = list(self.states.__members__.values())
        out: dict[tuple[S, S], set[str]] = {}
        for (source, etype), edge in self.edges.items():
            sources = [source] if source != ANY else [
                s for s in states if s not in self.final and (s, etype) not in self.edges]
            for src in sources:
                for dst in edge.targets - {src}:
                    out.setdefault((src, dst), set()).add(etype.__name__)  # type: ignore[arg-type]
        order = {s: i for i, s in enumerate(states)}
        return {k: sorted(out[k]) for k in sorted(out, key=lambda k: (order[k[0]], order[k[1]]))}

    def lookup(self, state: S, done: bool, etype: type[Event]) -> tuple[Any, Edge[S]] | None:
        for klass in etype.__mro__:
            for source in (state, ANY) if not done else (state,):
                found = self.edges.get((source, klass))
                if found is not None:
                    return source, found
            if klass is Event:
                break
        return None


class TableFlow(Generic[S]):
    """Base class for flows driven by a :class:`Table`."""

    TABLE: ClassVar[Table[Any, Any]]

    def __init__(self, call_id: str, state: S) -> None:
        self.call_id = call_id
        self._state: S = state
        self.history: list[tuple[str, str, str]] = []

    @property
    def state(self) -> S:
        return self._state

    @property
    def done(self) -> bool:
        return self._state in self.TABLE.final

    @property
    def state_name(self) -> str:
        return self._state.name

    def resume(self, state: S) -> None:
        """Start in ``state``: a call taken over from a previous process (not a transition)."""
        self._state = state

    def handle(self, event: Event) -> list[Command]:
        table = self.TABLE
        found = table.lookup(self._state, self.done, type(event))
        if found is None:
            if isinstance(event, table.ignored) or self.done:
                return []
            raise FlowError(
                f"call {self.call_id}: event {type(event).__name__} not allowed in state "
                f"{self._state.name}",
                details={"call_id": self.call_id, "state": self._state.name,
                         "event": type(event).__name__})
        _source, edge = found
        before = self._state
        after, commands = edge.handler(self, event)
        if after is not before and after not in edge.targets:
            raise FlowError(
                f"call {self.call_id}: {type(event).__name__} in {before.name} led to "
                f"{after.name}, which its table entry does not name",
                details={"call_id": self.call_id, "state": before.name,
                         "event": type(event).__name__})
        self._state = after
        self.history.append((before.name, type(event).__name__, after.name))
        return commands
