"""vCard parsing of arbitrary text and of mutated sample cards (pure): never an exception,
one result per card in the file, failures named by position (and UID when the card has one)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callsec_ari.store.vcard import CardFailure, ParsedCard, parse_vcards, split_cards
from tests.unit.store.test_store_vcard_parse import V3, V4

#: Line fragments that steer vobject into its many error paths.
FRAGMENTS = ["BEGIN:VCARD", "END:VCARD", "VERSION:3.0", "VERSION:4.0", "VERSION:9", "UID:",
             "FN;=:", " folded", "TEL;TYPE=:", 'TEL;TYPE="cell', "N:;;;;;;;;", "X-:", ":",
             "EMAIL;PREF=x:", "LANG:", "BEGIN:VCALENDAR", "\x00", "\ufeff", "=C3=A4",
             "TEL;VALUE=uri:tel:", "PHOTO;ENCODING=b:!!!", "ADR:;;;", "\\", ";;;"]
TEXT_LINES = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=40)), max_size=40)


def begins(text: str) -> int:
    return sum(line.strip().upper() == "BEGIN:VCARD" for line in text.splitlines())


@settings(max_examples=500, deadline=None)
@given(TEXT_LINES, st.sampled_from(["\n", "\r\n", "\r"]))
def test_arbitrary_text_never_raises_and_yields_one_result_per_card(
        lines: list[str], newline: str) -> None:
    text = newline.join(lines)
    results = list(parse_vcards(text))
    assert len(results) == begins(text)
    assert [r.position for r in results] == list(range(1, len(results) + 1))


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, int]:
    """A sample card with one structural mutation; (text, index of the mutated line)."""
    lines = draw(st.sampled_from([V3, V4])).splitlines()
    index = draw(st.integers(1, len(lines) - 2))  # keep BEGIN and END
    how = draw(st.sampled_from(["delete", "duplicate", "truncate", "garbage", "value",
                                "param", "fold"]))
    line = lines[index]
    if how == "delete":
        del lines[index]
    elif how == "duplicate":
        lines.insert(index, line)
    elif how == "truncate":
        lines[index] = line[:draw(st.integers(0, max(0, len(line) - 1)))]
    elif how == "garbage":
        lines.insert(index, draw(st.text(max_size=30).filter(
            lambda t: t.strip().upper() not in ("BEGIN:VCARD", "END:VCARD"))))
    elif how == "value":
        lines[index] = line.split(":", 1)[0] + ":" + draw(st.text(max_size=30))
    elif how == "param":
        name, _, value = line.partition(":")
        lines[index] = f"{name};{draw(st.sampled_from(FRAGMENTS))}:{value}"
    else:
        lines.insert(index, " " + draw(st.text(max_size=10)))
    return "\r\n".join(lines) + "\r\n", index


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(mutated())
def test_mutated_sample_card_is_parsed_or_reported_and_the_next_card_still_parses(
        card: tuple[str, int]) -> None:
    text, _index = card
    results = list(parse_vcards(text + V3))
    assert len(results) == begins(text) + 1
    last = results[-1]
    assert isinstance(last, ParsedCard) and last.data.uid == "abc-1"  # the intact card
    for result in results[:-1]:
        if isinstance(result, CardFailure):
            assert result.position >= 1 and result.reason
            assert "12345678" not in str(result) and "juergen" not in str(result)


def test_split_keeps_count_with_unterminated_and_nested_cards() -> None:
    text = "BEGIN:VCARD\nFN:a\nBEGIN:VCARD\nFN:b\nEND:VCARD\nBEGIN:VCARD\n"
    assert [chunk is None for _, _, chunk in split_cards(text)] == [True, False, True]
