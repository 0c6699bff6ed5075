"""The flow diagrams come from the transition tables (``callsec flows``, ``docs/flows.md``)."""

from __future__ import annotations

import pytest

from callsec_ari.cli import main
from callsec_ari.core.errors import FlowError
from callsec_ari.core.events import CallStarted, DtmfReceived
from callsec_ari.flows import PAGE, TABLES, flows_page
from callsec_ari.probe.flow import ProbeFlow, ProbeState


def test_the_checked_in_page_is_current() -> None:
    assert PAGE.read_text(encoding="utf-8") == flows_page(), \
        "docs/flows.md is stale: run `callsec flows --page > docs/flows.md`"


def test_callsec_flows_dot_draws_one_flow_from_its_table(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flows", "--dot", "probe"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith('digraph "probe" {') and '"DONE" [peripheries=2];' in dot
    assert '"COLLECTING" -> "FAREWELL" [label="DtmfReceived\\nTimerExpired"];' in dot


def test_every_state_but_the_first_is_reached_and_every_live_state_left() -> None:
    for name, table in TABLES.items():
        edges = table.transitions()
        states = list(table.states.__members__.values())
        reached = {b for _a, b in edges}
        left = {a for a, _b in edges}
        assert set(states[1:]) <= reached, name
        assert {s for s in states if s not in table.final} <= left, name


def test_a_handler_leading_to_a_state_its_entry_does_not_name_is_an_error() -> None:
    table, key = TABLES["probe"], (ProbeState.COLLECTING, DtmfReceived)
    flow = ProbeFlow("call-9")
    flow.handle(CallStarted(flow="probe", at=0.0))
    entry = table.edges.pop(key)
    try:
        table.on(ProbeState.COLLECTING, DtmfReceived, ProbeFlow._digit)  # names no next state
        with pytest.raises(FlowError, match=r"call-9.*FAREWELL"):
            for digit in "12#":
                flow.handle(DtmfReceived(digit=digit, leg="caller", at=1.0))
    finally:
        table.edges[key] = entry
