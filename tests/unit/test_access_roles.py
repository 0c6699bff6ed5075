"""The permission table (pure): roles, scopes, reveal kinds, the endpoint rows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.access.roles import (
    ENDPOINTS,
    PERMISSIONS,
    Owner,
    Permission,
    Role,
    Scope,
    Subject,
    allowed,
    endpoint,
    matrix,
    revealable_kinds,
)
from callsec_ari.core.errors import ConfigError

ANNA = Subject("anna", Role.AGENT, endpoint="agent100", team="blue")
BEN = Subject("ben", Role.AGENT, endpoint="agent101", team="blue")
SVEN = Subject("sven", Role.SUPERVISOR, team="blue")
ADAM = Subject("adam", Role.ADMIN)
OLGA = Subject("olga", Role.AUDITOR)
ANNAS_CALL = Owner(agent_endpoint="agent100", team="blue")
RED_CALL = Owner(agent_endpoint="agent102", team="red")
PERSONAL = {Permission.CALLS_VIEW_OWN, Permission.CALLS_VIEW_TEAM, Permission.CAPTURES_REQUEST,
            Permission.CAPTURES_CANCEL, Permission.CAPTURES_VIEW, Permission.VAULT_REVEAL}


def test_every_role_has_a_row_and_every_permission_is_granted_to_someone() -> None:
    assert set(PERMISSIONS) == set(Role)
    granted = {p for row in PERMISSIONS.values() for p in row}
    assert granted == set(Permission)


def test_agent_acts_on_own_calls_only() -> None:
    assert allowed(ANNA, Permission.CAPTURES_REQUEST, ANNAS_CALL)
    assert not allowed(BEN, Permission.CAPTURES_REQUEST, ANNAS_CALL)
    assert not allowed(BEN, Permission.CALLS_VIEW_OWN, ANNAS_CALL)
    assert not allowed(ANNA, Permission.CALLS_VIEW_TEAM, ANNAS_CALL)
    assert not allowed(ANNA, Permission.VAULT_REVEAL, ANNAS_CALL)


def test_supervisor_sees_and_reveals_for_own_team_only() -> None:
    for perm in (Permission.CALLS_VIEW_TEAM, Permission.CAPTURES_VIEW,
                 Permission.CAPTURES_CANCEL, Permission.VAULT_REVEAL):
        assert allowed(SVEN, perm, ANNAS_CALL)
        assert not allowed(SVEN, perm, RED_CALL)
    assert not allowed(SVEN, Permission.CAPTURES_REQUEST, ANNAS_CALL)  # not their phone


def test_auditor_reads_the_audit_trail_and_nothing_personal() -> None:
    assert allowed(OLGA, Permission.AUDIT_READ)
    assert not PERSONAL & set(PERMISSIONS[Role.AUDITOR])
    assert not any(allowed(OLGA, p, ANNAS_CALL) for p in PERSONAL)


def test_admin_manages_users_and_keys_but_sees_no_calls() -> None:
    assert allowed(ADAM, Permission.USERS_MANAGE) and allowed(ADAM, Permission.KEYS_MANAGE)
    assert not PERSONAL & set(PERMISSIONS[Role.ADMIN])
    assert not allowed(ADAM, Permission.AUDIT_READ)


def test_a_user_without_endpoint_or_team_owns_nothing() -> None:
    nobody = Subject("x", Role.SUPERVISOR)
    assert not allowed(nobody, Permission.CALLS_VIEW_TEAM, Owner(None, None))
    assert not allowed(nobody, Permission.CALLS_VIEW_OWN, Owner(None, None))


names = st.one_of(st.none(), st.sampled_from(["agent100", "agent101", "agent102"]))
teams = st.one_of(st.none(), st.sampled_from(["blue", "red"]))


@given(st.sampled_from(list(Role)), st.sampled_from(list(Permission)), names, teams, names, teams)
def test_scope_rules_hold_for_any_subject_and_call(role: Role, perm: Permission,
                                                   endpoint_: str | None, team: str | None,
                                                   call_endpoint: str | None,
                                                   call_team: str | None) -> None:
    subject = Subject("u", role, endpoint_, team)
    owner = Owner(call_endpoint, call_team)
    result = allowed(subject, perm, owner)
    scope = PERMISSIONS[role].get(perm)
    own = endpoint_ is not None and endpoint_ == call_endpoint
    same_team = team is not None and team == call_team
    if scope is None:
        assert not result
    elif scope is Scope.OWN:
        assert result == own
    elif scope is Scope.TEAM:
        assert result == (own or same_team)
    else:
        assert result


def test_reveal_kinds_default_to_iban_and_ids_and_never_include_cvv() -> None:
    assert revealable_kinds(["iban", "national_id"]) == {"iban", "national_id"}
    assert revealable_kinds(["IBAN", " card_number "]) == {"iban", "card_number"}
    with pytest.raises(ConfigError) as err:
        revealable_kinds(["iban", "cvv"])
    assert err.value.key == "reveal_kinds"
    with pytest.raises(ConfigError):
        revealable_kinds(["pin"])


def test_endpoint_rows_are_unique_and_resource_rows_use_scoped_permissions() -> None:
    keys = [(ep.method, ep.path) for ep in ENDPOINTS]
    assert len(keys) == len(set(keys))
    for ep in ENDPOINTS:
        if ep.resource is not None:
            assert ep.permissions and "{" in ep.path
            assert all(PERMISSIONS[r].get(p) in (Scope.OWN, Scope.TEAM, None)
                       for r in Role for p in ep.permissions)
        if not ep.auth:
            assert not ep.permissions
    assert endpoint("GET", "/api/v1/audit").permissions == (Permission.AUDIT_READ,)
    with pytest.raises(KeyError):
        endpoint("GET", "/nowhere")


def test_matrix_prints_one_line_per_permission() -> None:
    lines = matrix().splitlines()
    assert lines[0].split() == ["permission", *[r.value for r in Role]]
    assert len(lines) == 1 + len(Permission)
    assert any(line.split() == ["vault.reveal", "-", "team", "-", "-"] for line in lines)
