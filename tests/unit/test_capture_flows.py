"""Which fields a self-service capture asks for, from the AGI request."""

from __future__ import annotations

import pytest

from callsec_ari.capture.selfservice import SelfServiceCaptureFlow
from callsec_ari.config import Settings
from callsec_ari.core.errors import InvalidInput
from callsec_ari.core.events import CallStarted
from callsec_ari.flows import FlowRegistry


def fields_of(started: CallStarted) -> tuple[str, ...]:
    flow = FlowRegistry(Settings()).capture("agi-1", started)
    assert isinstance(flow, SelfServiceCaptureFlow)
    return tuple(kind.value for kind in flow.entry.fields)


def test_the_dialplan_splitting_the_field_list_at_its_commas_loses_no_field() -> None:
    # AGI(agi://127.0.0.1:4573/capture?fields=card_number,expiry,cvv): Asterisk passes
    # "...?fields=card_number" as the script and "expiry", "cvv" as agi_arg_1, agi_arg_2.
    started = CallStarted(flow="capture", options=(("fields", "card_number"),),
                          args=("expiry", "cvv"))
    assert fields_of(started) == ("card_number", "expiry", "cvv")


def test_an_escaped_list_and_the_default() -> None:
    started = CallStarted(flow="capture", options=(("fields", "iban,national_id"),))
    assert fields_of(started) == ("iban", "national_id")
    assert fields_of(CallStarted(flow="capture")) == ("card_number", "expiry", "cvv")


def test_unknown_fields_are_refused_and_other_arguments_ignored() -> None:
    started = CallStarted(flow="capture", options=(("fields", "iban"),), args=("lang=de",))
    assert fields_of(started) == ("iban",)
    with pytest.raises(InvalidInput):
        fields_of(CallStarted(flow="capture", options=(("fields", "pin"),)))
