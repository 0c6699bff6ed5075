"""What a connect call leaves in Asterisk, and which of those calls nobody runs any more.

A ``connect`` call lives in bridges named after it: ``callsec-call-<call id>`` (the caller and
the agent's leg ``<call id>-agent``) and, during a capture, ``callsec-capture-<call id>`` (the
caller alone). The names are made here and read back here: the ARI adapter
(:mod:`callsec_ari.ari.recovery`) lists an application's bridges and channels after a restart or
a takeover and asks :func:`find_orphans` which calls it must adopt; each adopted call starts a
:class:`~callsec_ari.connect.flow.ConnectFlow` whose first event, :class:`Recovered`
(:meth:`Orphan.event`), says what was found. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from callsec_ari.capture.talkthrough import MEDIA_LEGS  # channels <call id>-media-caller/agent
from callsec_ari.core.events import Event

CAPTURE_PREFIX = "callsec-capture-"
CALL_PREFIX = "callsec-call-"
AGENT_SUFFIX = "-agent"


def call_bridge(call_id: str) -> str:
    return CALL_PREFIX + call_id


def capture_bridge(call_id: str) -> str:
    return CAPTURE_PREFIX + call_id


@dataclass(frozen=True, kw_only=True)
class Recovered(Event):
    """The first event of an adopted call: what a restarted callsec found in Asterisk."""

    caller_present: bool = True
    #: The agent's leg is still in the call's bridge ``callsec-call-<call id>``.
    agent_present: bool = True
    #: The capture bridge ``callsec-capture-<call id>`` was found (a capture was running).
    capture: bool = False
    #: Talk-through media legs (``media-caller``, ``media-agent``) still in Asterisk.
    media: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Orphan:
    """One call whose bridges exist in Asterisk but whose flow no longer runs."""

    call_id: str
    caller_present: bool
    agent_present: bool
    agent_bridged: bool
    capture: bool
    #: Talk-through media legs of the call still in the application (hung up on adoption).
    media: tuple[str, ...] = ()

    @property
    def agent_id(self) -> str:
        return self.call_id + AGENT_SUFFIX

    def event(self, at: float) -> Recovered:
        return Recovered(at=at, caller_present=self.caller_present,
                         agent_present=self.agent_bridged, capture=self.capture,
                         media=self.media)


def call_of(bridge_id: str) -> str | None:
    """The call id a callsec bridge is named after (None: not one of ours)."""
    for prefix in (CAPTURE_PREFIX, CALL_PREFIX):
        if bridge_id.startswith(prefix) and len(bridge_id) > len(prefix):
            return bridge_id[len(prefix):]
    return None


def find_orphans(bridges: Mapping[str, Collection[str]], channel_ids: Collection[str], *,
                 known: Callable[[str], bool]) -> list[Orphan]:
    """The app's ``bridges`` (id -> channel ids in it) and ``channel_ids`` -> the calls
    nobody runs any more (``known`` says which calls this process runs)."""
    calls = sorted({call for bridge_id in bridges if (call := call_of(bridge_id)) is not None})
    orphans: list[Orphan] = []
    for call_id in calls:
        if known(call_id):
            continue
        in_call_bridge = bridges.get(call_bridge(call_id))
        agent_id = call_id + AGENT_SUFFIX
        orphans.append(Orphan(
            call_id=call_id, caller_present=call_id in channel_ids,
            agent_present=agent_id in channel_ids,
            agent_bridged=in_call_bridge is not None and agent_id in in_call_bridge
            and agent_id in channel_ids,
            capture=capture_bridge(call_id) in bridges,
            media=tuple(leg for leg in MEDIA_LEGS if f"{call_id}-{leg}" in channel_ids)))
    return orphans
