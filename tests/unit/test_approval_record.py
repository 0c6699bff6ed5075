"""Approval terms, the code's binding digest, the signed record and the messages (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callsec_ari.approval.errors import ApprovalTermsInvalid
from callsec_ari.approval.messages import check_approval_settings, render_approval_message
from callsec_ari.approval.record import (
    Terms,
    parse_terms,
    record_key,
    sign_record,
    terms_digest,
    verify_record,
)
from callsec_ari.config.sections import ApprovalSettings, VerificationSettings
from callsec_ari.core.errors import ConfigError

CUR = ("EUR", "USD")


def test_terms_are_parsed_and_normalised() -> None:
    t = parse_terms({"amount": "49.9", "currency": "EUR", "payee": "  ACME   Energy "}, CUR)
    assert t == Terms(amount="49.90", currency="EUR", payee="ACME Energy")


@pytest.mark.parametrize("body", [
    {"amount": "0", "currency": "EUR", "payee": "ACME"},
    {"amount": "-1", "currency": "EUR", "payee": "ACME"},
    {"amount": "1e3", "currency": "EUR", "payee": "ACME"},
    {"amount": 49.9, "currency": "EUR", "payee": "ACME"},
    {"amount": "1.999", "currency": "EUR", "payee": "ACME"},
    {"amount": "10", "currency": "eur", "payee": "ACME"},
    {"amount": "10", "currency": "JPY", "payee": "ACME"},
    {"amount": "10", "currency": "EUR", "payee": ""},
    {"amount": "10", "currency": "EUR", "payee": "A" * 71},
    {"amount": "10", "currency": "EUR", "payee": "ACME\nEvil"},
    {"amount": "10", "currency": "EUR", "payee": "<script>"},
    {"amount": "10", "currency": "EUR", "payee": "ACME\u202eygrenE"},
])
def test_bad_terms_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ApprovalTermsInvalid):
        parse_terms(body, CUR)


def test_digest_binds_amount_payee_currency_and_call() -> None:
    base = Terms(amount="49.90", currency="EUR", payee="ACME Energy")
    d = terms_digest(base, "call-1")
    assert d != terms_digest(Terms(amount="49.91", currency="EUR", payee="ACME Energy"), "call-1")
    assert d != terms_digest(Terms(amount="49.90", currency="USD", payee="ACME Energy"), "call-1")
    assert d != terms_digest(Terms(amount="49.90", currency="EUR", payee="ACME Energie"),
                             "call-1")
    assert d != terms_digest(base, "call-2")
    assert d == terms_digest(base, "call-1")


def test_signed_record_verifies_and_any_change_breaks_it() -> None:
    key = record_key(b"k" * 32)
    record = {"approval_id": "AP-0a1b2c3d4e5f6a7b", "amount": "49.90", "currency": "EUR",
              "payee": "ACME Energy", "customer_ref": "C-ABCDEFGH", "call_id": "c1",
              "result": "approved", "decided_at": "2026-12-07T14:00:00+00:00"}
    sig = sign_record(record, key)
    assert verify_record(record, sig, key)
    assert not verify_record({**record, "amount": "4990.00"}, sig, key)
    assert not verify_record({**record, "result": "declined"}, sig, key)
    assert not verify_record(record, sig, record_key(b"x" * 32))


def test_messages_name_amount_payee_company_and_reference_in_both_languages() -> None:
    terms = Terms(amount="49.90", currency="EUR", payee="ACME Energy")
    when = datetime(2026, 12, 7, 13, 5, tzinfo=UTC)
    v, a = VerificationSettings(company_name="Bank"), ApprovalSettings()
    for lang, word in (("en", "approve"), ("de", "freigeben")):
        _, sms = render_approval_message(lang, "sms", "123456", terms, "ABCDEFGH", when, v, a)
        for part in ("Bank", "49.90 EUR", "ACME Energy", "123456", "ABCDEFGH", word):
            assert part in sms
        subject, mail = render_approval_message(lang, "email", "123456", terms, "ABCDEFGH",
                                                when, v, a)
        assert subject is not None and "123456" not in subject and "ACME Energy" in mail


def test_configured_template_is_used_and_checked() -> None:
    terms = Terms(amount="5.00", currency="EUR", payee="ACME")
    a = ApprovalSettings(sms_template_en="{company} {amount} {currency} {payee} code {code}")
    _, sms = render_approval_message("en", "sms", "1234", terms, "REF", datetime.now(UTC),
                                     VerificationSettings(company_name="Bank"), a)
    assert sms.startswith("Bank 5.00 EUR ACME code 1234")
    check_approval_settings(a)
    with pytest.raises(ConfigError, match="sms_template_de"):
        check_approval_settings(ApprovalSettings(sms_template_de="{company} code {code}"))
    with pytest.raises(ConfigError, match="currencies"):
        check_approval_settings(ApprovalSettings(currencies=("euro",)))
