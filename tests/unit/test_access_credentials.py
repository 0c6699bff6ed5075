"""Pure credential helpers: scrypt hashes, tokens, CSRF derivation, TOTP steps, login delays."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from callsec_ari.access import credentials as cred
from callsec_ari.access.users import endpoint_name

NOW = datetime(2030, 5, 17, 9, 30, 12, tzinfo=UTC)
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_password_hash_verifies_only_the_right_password() -> None:
    encoded = cred.hash_password("correct horse battery staple")
    assert encoded.startswith("scrypt$14$8$1$")
    assert "correct" not in encoded
    assert cred.verify_password("correct horse battery staple", encoded)
    assert not cred.verify_password("correct horse battery stapl", encoded)
    assert not cred.verify_password("", encoded)


def test_password_hashes_are_salted() -> None:
    assert cred.hash_password("same password!") != cred.hash_password("same password!")


def test_malformed_or_foreign_hashes_verify_nothing() -> None:
    for encoded in ("", "plain", "scrypt$14$8$1$salt", "bcrypt$2b$12$abc$def$ghi",
                    "scrypt$40$8$1$AAAA$AAAA", "scrypt$x$8$1$AAAA$AAAA"):
        assert not cred.verify_password("anything", encoded)


def test_dummy_hash_costs_a_real_kdf_run_but_matches_nothing() -> None:
    assert cred._parse(cred.DUMMY_HASH) is not None
    assert not cred.verify_password("", cred.DUMMY_HASH)


def test_password_rules() -> None:
    assert cred.password_problem("short") is not None
    assert cred.password_problem(" twelve chars ok") is not None
    assert cred.password_problem("x" * 2000) is not None
    assert cred.password_problem("twelve chars") is None


def test_tokens_are_long_random_and_stored_as_sha256() -> None:
    tokens = {cred.new_token() for _ in range(50)}
    assert len(tokens) == 50 and all(len(t) >= 43 for t in tokens)
    token = next(iter(tokens))
    digest = cred.token_hash(token)
    assert len(digest) == 64 and digest == cred.token_hash(token) and token not in digest


def test_csrf_token_is_bound_to_the_session() -> None:
    a, b = cred.new_token(), cred.new_token()
    assert cred.csrf_token_for(a) == cred.csrf_token_for(a)
    assert cred.csrf_token_for(a) != cred.csrf_token_for(b)
    assert a not in cred.csrf_token_for(a)


def code_at(offset_steps: int) -> str:
    return cred.totp_code(SECRET, cred.totp_step(NOW) + offset_steps)


def test_totp_accepts_the_current_and_neighbouring_steps_only() -> None:
    step = cred.totp_step(NOW)
    assert cred.totp_match_step(SECRET, code_at(0), NOW) == step
    assert cred.totp_match_step(SECRET, code_at(-1), NOW) == step - 1
    assert cred.totp_match_step(SECRET, code_at(1), NOW) == step + 1
    far = {code_at(-3), code_at(3)} - {code_at(-1), code_at(0), code_at(1)}
    for code in far:
        assert cred.totp_match_step(SECRET, code, NOW) is None


def test_totp_code_is_not_accepted_twice() -> None:
    step = cred.totp_match_step(SECRET, code_at(0), NOW)
    assert step is not None
    assert cred.totp_match_step(SECRET, code_at(0), NOW, last_step=step) is None
    assert cred.totp_match_step(SECRET, code_at(-1), NOW, last_step=step) is None
    assert cred.totp_match_step(SECRET, code_at(1), NOW, last_step=step) == step + 1


def test_totp_matches_pyotp_reference_codes() -> None:
    import pyotp

    assert code_at(0) == pyotp.TOTP(SECRET).at(NOW)


@settings(max_examples=300)
@given(st.text(alphabet="0123456789", min_size=0, max_size=10))
def test_only_the_three_valid_codes_match(code: str) -> None:
    valid = {code_at(-1), code_at(0), code_at(1)}
    matched = cred.totp_match_step(SECRET, code, NOW)
    assert (matched is not None) == (code in valid)


@given(st.text(max_size=8).filter(lambda s: not (s.isascii() and s.isdigit())))
def test_non_digit_codes_never_match(code: str) -> None:
    assert cred.totp_match_step(SECRET, code, NOW) is None


def test_provisioning_uri_names_issuer_and_user() -> None:
    uri = cred.provisioning_uri(SECRET, "anna", "CallSec Demo")
    assert uri.startswith("otpauth://totp/CallSec%20Demo:anna?")
    assert f"secret={SECRET}" in uri and "issuer=CallSec%20Demo" in uri


def test_login_delay_starts_at_the_limit_doubles_and_is_capped() -> None:
    delays = [cred.login_delay(n, max_failures=5, first_delay=2, cap=900) for n in range(1, 16)]
    assert delays == [0, 0, 0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]
    assert cred.login_delay(10**6, max_failures=5, first_delay=2, cap=900) == 900
    assert cred.login_delay(1, max_failures=1, first_delay=30, cap=60) == 30


def test_endpoint_names_drop_the_technology() -> None:
    assert endpoint_name("PJSIP/agent100") == "agent100"
    assert endpoint_name("agent100") == "agent100"
    assert endpoint_name("") is None and endpoint_name(None) is None
