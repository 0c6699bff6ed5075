"""What every call flow offers the dispatcher, and the transition-table helper.

A flow is a pure object: ``handle(event) -> list[Command]``. Its transitions are declared in
one table per flow, ``{(State, EventType): method}``, read top to bottom (h11's ``_state.py``);
an event the table does not allow in the current state raises :class:`FlowError` naming the
call id, the state and the event, except events listed as ``IGNORED_EVERYWHERE``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from callsec_ari.core.commands import Command
from callsec_ari.core.errors import FlowError
from callsec_ari.core.events import Event

S = TypeVar("S", bound=Enum)

#: Table key for transitions allowed in every non-final state, e.g. ``(ANY, CallerHungUp)``.
ANY = "*"


class Flow(Protocol):
    call_id: str

    @property
    def done(self) -> bool: ...

    @property
    def state_name(self) -> str: ...

    def handle(self, event: Event) -> list[Command]: ...


Transition = Callable[[Any, Any], list[Command]]


class TableFlow(Generic[S]):
    """Base class for flows driven by a transition table."""

    TABLE: Mapping[tuple[Any, type[Event]], Transition] = {}
    #: Events that may arrive in any state and are dropped when the table has no entry.
    IGNORED_EVERYWHERE: tuple[type[Event], ...] = ()
    FINAL_STATES: frozenset[Any] = frozenset()

    def __init__(self, call_id: str, state: S) -> None:
        self.call_id = call_id
        self.state: S = state
        self.history: list[tuple[str, str, str]] = []

    @property
    def done(self) -> bool:
        return self.state in self.FINAL_STATES

    @property
    def state_name(self) -> str:
        return self.state.name

    def handle(self, event: Event) -> list[Command]:
        transition = self._lookup(type(event))
        if transition is None:
            if isinstance(event, self.IGNORED_EVERYWHERE) or self.done:
                return []
            raise FlowError(
                f"call {self.call_id}: event {type(event).__name__} not allowed in state "
                f"{self.state.name}",
                details={"call_id": self.call_id, "state": self.state.name,
                         "event": type(event).__name__},
            )
        before = self.state.name
        commands = transition(self, event)
        self.history.append((before, type(event).__name__, self.state.name))
        return commands

    def _lookup(self, etype: type[Event]) -> Transition | None:
        for klass in etype.__mro__:
            found = self.TABLE.get((self.state, klass))
            if found is None and not self.done:
                found = self.TABLE.get((ANY, klass))
            if found is not None:
                return found
            if klass is Event:
                break
        return None
