"""Audit targets are identifiers of their action's kind; anything else becomes a keyed marker."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.store.audit_check import parse_expected, read_expected_file
from callsec_ari.store.audit_targets import MARKER, fits, keyed_marker, safe_target

KEY = b"k" * 32


def test_identifiers_of_each_kind_are_kept() -> None:
    for action, target in (("customer.create", "C-ABCD2345EFGH6789"),
                           ("gdpr.erase", "C-ABCD2345EFGH6789"),
                           ("vault.reveal", "V-ABCD2345EFGH6789"),
                           ("login.failed", "anna"), ("user.add", "dora.k-2"),
                           ("logout", "sven"), ("keys.rotate", "kek-0002"),
                           ("verification.finished", "1733567890.42"),
                           ("capture.finished", "CP-1a2b3c4d5e6f7a8b"),
                           ("access.denied", "call C-100"),
                           ("access.denied", "GET /api/v1/calls/{call_id}/events"),
                           ("agi.peer_refused", "127.0.0.2"),
                           ("agi.session_refused", "agi-1718000000.4242"),
                           ("gdpr.purge", ""), ("login.failed", "unknown-user:" + "ab" * 12)):
        assert safe_target(action, target, KEY) == target, (action, target)


@given(st.sampled_from(["CP", "VF"]), st.text(alphabet="0123456789abcdef", min_size=16,
                                               max_size=16))
def test_generated_hex_ids_are_kept_even_when_mostly_digits(prefix: str, hex_part: str) -> None:
    for action, target in (("capture.finished", f"{prefix}-{hex_part}"),
                           ("access.denied", f"capture {prefix}-{hex_part}")):
        assert safe_target(action, target, KEY) == target


def test_a_target_of_the_wrong_kind_is_replaced() -> None:
    assert not fits("customer.export", "anna")
    assert not fits("keys.rotate", "C-ABCD2345EFGH6789")
    assert not fits("login.failed", "Anna Smith")


@given(st.sampled_from(["login.failed", "customer.export", "capture.finished", "other.x",
                        "access.denied"]),
       st.text(alphabet="0123456789", min_size=13, max_size=19),
       st.sampled_from(["{}", "call {}", "PAN:{}", "x{}", "{}.1"]))
def test_a_card_number_never_survives_as_a_target(action: str, pan: str, shape: str) -> None:
    stored = safe_target(action, shape.format(pan), KEY)
    assert pan not in stored and MARKER.fullmatch(stored)


@given(st.text(min_size=1, max_size=60).filter(lambda t: any(not c.isalnum() for c in t)
                                               or t[:1].isupper()))
def test_free_text_as_a_user_name_becomes_a_stable_keyed_marker(typed: str) -> None:
    stored = safe_target("login.failed", typed, KEY)
    if stored != typed:
        assert stored == keyed_marker(typed, KEY) == safe_target("login.failed", typed, KEY)
        assert stored != keyed_marker(typed, b"o" * 32)


def test_exported_heads_are_parsed_from_both_forms() -> None:
    digest = "ab" * 32
    assert parse_expected(f"12:{digest} 2026-12-07T13:00:00+00:00") == (12, digest)
    assert read_expected_file([f'{{"seq": 3, "expect": "3:{digest}"}}', "", "# note"]) \
        == [(3, digest)]
