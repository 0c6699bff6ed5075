"""One-time verification codes and TOTP checks (times passed in)."""

from __future__ import annotations

import secrets

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.core.errors import InvalidInput
from callsec_ari.verification.codes import (
    CheckResult,
    OneTimeCode,
    match_totp,
    new_code,
    new_totp_secret,
)

T0 = 1_700_000_000.0


def code(value: str = "123456", *, ttl: float = 600.0, max_checks: int = 5,
         max_sends: int = 5) -> OneTimeCode:
    return OneTimeCode(code=value, created_at=T0, ttl=ttl, max_checks=max_checks,
                       max_sends=max_sends)


@pytest.mark.parametrize("digits", [4, 6, 10])
def test_new_code_has_the_requested_number_of_digits(digits: int) -> None:
    for _ in range(50):
        value = new_code(digits)
        assert len(value) == digits and value.isdigit()


def test_new_code_keeps_leading_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "randbelow", lambda bound: 42)
    assert new_code(6) == "000042"


@pytest.mark.parametrize("digits", [3, 11])
def test_new_code_refuses_lengths_outside_four_to_ten(digits: int) -> None:
    with pytest.raises(ValueError):
        new_code(digits)


def test_new_codes_differ() -> None:
    assert len({new_code(10) for _ in range(100)}) == 100


def test_the_right_code_verifies_once_then_answers_used() -> None:
    otc = code()
    assert otc.check("123456", T0 + 1) is CheckResult.OK
    assert otc.check("123456", T0 + 2) is CheckResult.USED
    assert otc.checks_left == 0 and not otc.resend(T0 + 3)


def test_wrong_codes_use_up_checks_then_the_code_is_exhausted() -> None:
    otc = code(max_checks=3)
    assert [otc.check("000000", T0) for _ in range(3)] == [CheckResult.WRONG] * 3
    assert otc.checks_left == 0
    assert otc.check("123456", T0) is CheckResult.EXHAUSTED
    assert not otc.used


def test_code_expires_exactly_at_created_plus_ttl() -> None:
    assert code(ttl=600).check("123456", T0 + 599.999) is CheckResult.OK
    late = code(ttl=600)
    assert late.check("123456", T0 + 600) is CheckResult.EXPIRED
    assert late.checks == 0


@pytest.mark.parametrize("candidate", ["12345", "1234567", "", "12345٦", "abcdef"])
def test_malformed_candidates_are_simply_wrong(candidate: str) -> None:
    assert code().check(candidate, T0) is CheckResult.WRONG


def test_resend_keeps_the_same_code_and_counts_sends() -> None:
    otc = code(max_sends=3)
    assert otc.sends == 1
    assert otc.resend(T0 + 10) and otc.resend(T0 + 20)
    assert not otc.resend(T0 + 30)
    assert otc.sends == 3 and otc.code == "123456"
    assert otc.check("123456", T0 + 40) is CheckResult.OK


def test_resend_is_refused_once_expired_used_or_out_of_checks() -> None:
    assert not code(ttl=60).resend(T0 + 60)
    used = code()
    used.check("123456", T0)
    assert not used.resend(T0)
    exhausted = code(max_checks=1)
    exhausted.check("999999", T0)
    assert not exhausted.resend(T0)


def test_discard_drops_the_plaintext() -> None:
    otc = code()
    otc.discard()
    assert otc.code == "" and otc.check("123456", T0) is CheckResult.USED


@given(st.text(alphabet="0123456789", min_size=4, max_size=10))
def test_the_code_never_appears_in_repr(value: str) -> None:
    otc = OneTimeCode(code=value, created_at=0.0)
    assert value not in repr(otc) and "code=" not in repr(otc).replace("OneTimeCode(", "")


def test_issue_makes_a_fresh_code_with_the_given_limits() -> None:
    otc = OneTimeCode.issue(T0, digits=8, ttl=300, max_checks=2, max_sends=4)
    assert len(otc.code) == 8 and otc.expires_at == T0 + 300
    assert (otc.checks_left, otc.sends) == (2, 1)


@pytest.mark.parametrize(("ttl", "checks", "sends"), [(0.0, 5, 5), (600.0, 0, 5), (600.0, 5, 0)])
def test_nonsense_limits_are_refused(ttl: float, checks: int, sends: int) -> None:
    with pytest.raises(ValueError):
        code(ttl=ttl, max_checks=checks, max_sends=sends)


# --- TOTP -----------------------------------------------------------------------------------

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@given(st.floats(min_value=60, max_value=4_000_000_000))
def test_current_totp_verifies_and_neighbours_within_the_window(now: float) -> None:
    totp = pyotp.TOTP(SECRET)
    step = int(now // 30)
    assert match_totp(SECRET, totp.generate_otp(step), now) is not None
    assert match_totp(SECRET, totp.generate_otp(step - 1), now) is not None
    assert match_totp(SECRET, totp.generate_otp(step + 1), now) == step + 1
    far = totp.generate_otp(step - 2)
    if far not in {totp.generate_otp(s) for s in (step - 1, step, step + 1)}:
        assert match_totp(SECRET, far, now) is None
        assert match_totp(SECRET, far, now, valid_window=2) == step - 2


def test_matched_step_blocks_replay_of_the_same_code() -> None:
    now = T0
    candidate = pyotp.TOTP(SECRET).at(int(now))
    step = match_totp(SECRET, candidate, now)
    assert step == int(now // 30)
    assert match_totp(SECRET, candidate, now + 5, after_step=step) is None


@pytest.mark.parametrize("candidate", ["", "12345", "1234567", "abcdef"])
def test_malformed_totp_candidates_fail(candidate: str) -> None:
    assert match_totp(SECRET, candidate, T0) is None


def test_invalid_secret_is_invalid_input_without_the_secret_in_the_message() -> None:
    with pytest.raises(InvalidInput) as caught:
        match_totp("not base32!!", "123456", T0)
    assert "not base32!!" not in str(caught.value)


def test_new_totp_secret_is_accepted_by_authenticator_apps() -> None:
    secret = new_totp_secret()
    assert len(secret) == 32
    assert match_totp(secret, pyotp.TOTP(secret).at(int(T0)), T0) is not None
