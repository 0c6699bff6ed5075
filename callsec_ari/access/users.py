"""Staff accounts: add, list, disable, reset MFA. Every change is audited.

Each user has a scrypt password hash (:mod:`.credentials`) and a mandatory TOTP secret,
encrypted under the user's own data key (owner kind ``user``; the store's envelope
encryption, so ``callsec keys rotate`` re-wraps it like every other key).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from callsec_ari.access import credentials as cred
from callsec_ari.access.models import SessionRow, UserRow
from callsec_ari.access.roles import Role, Subject
from callsec_ari.core.errors import Conflict, InvalidInput, NotFound
from callsec_ari.store.audit import AuditLog
from callsec_ari.store.db import Database
from callsec_ari.store.keys import DataKeys
from callsec_ari.store.models import as_utc, utcnow

T = "users"
_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Clock = Callable[[], datetime]


def endpoint_name(value: str | None) -> str | None:
    """``PJSIP/agent100`` -> ``agent100``; ``agent100`` stays; empty -> None."""
    if not value:
        return None
    name = value.rsplit("/", 1)[-1].strip()
    return name or None


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: Role
    endpoint: str | None
    team: str | None
    disabled: bool
    created_at: datetime

    @property
    def subject(self) -> Subject:
        return Subject(self.name, self.role, self.endpoint, self.team)

    @property
    def actor(self) -> str:
        return f"user:{self.name}"

    def to_json(self) -> dict[str, object]:
        return {"username": self.name, "role": self.role.value, "endpoint": self.endpoint,
                "team": self.team, "disabled": self.disabled,
                "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class Enrolment:
    """A new TOTP secret: shown once (URI and QR code), then only stored encrypted."""

    user: User
    secret: str = field(repr=False)
    uri: str = field(repr=False)


def to_user(row: UserRow) -> User:
    return User(row.id, row.name, Role(row.role), row.endpoint, row.team, row.disabled,
                as_utc(row.created_at))


def _check_label(value: str | None, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not _LABEL.match(value):
        raise InvalidInput(f"{key}: letters, digits, '.', '_' and '-' only (max 64)",
                           details={"field": key})
    return value


class UserStore:
    def __init__(self, db: Database, keys: DataKeys, audit: AuditLog, *,
                 issuer: str = "callsec", clock: Clock = utcnow) -> None:
        self.db = db
        self.keys = keys
        self.audit = audit
        self.issuer = issuer
        self.clock = clock

    # -- reads ----------------------------------------------------------------------------
    @staticmethod
    def row(s: Session, name: str) -> UserRow | None:
        return s.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()

    def _existing(self, s: Session, name: str) -> UserRow:
        row = self.row(s, name)
        if row is None:
            raise NotFound("no such user", details={"username": name})
        return row

    def get(self, name: str) -> User:
        with self.db.session() as s:
            return to_user(self._existing(s, name))

    def all(self) -> list[User]:
        with self.db.session() as s:
            return [to_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.name))]

    def endpoint_owners(self) -> dict[str, User]:
        """endpoint -> its user (whose team a call to that endpoint belongs to)."""
        with self.db.session() as s:
            rows = s.scalars(select(UserRow).where(UserRow.endpoint.is_not(None)))
            return {r.endpoint: to_user(r) for r in rows if r.endpoint}

    def team_members(self, team: str) -> list[str]:
        with self.db.session() as s:
            return list(s.scalars(select(UserRow.name).where(UserRow.team == team)))

    def totp_secret(self, s: Session, row: UserRow) -> str:
        key = self.keys.load(s, row.key_id)
        return key.decrypt_text(row.totp_secret_enc, table=T, column="totp_secret",
                                row_id=row.id)

    # -- changes --------------------------------------------------------------------------
    def _enrol(self, s: Session, row: UserRow) -> Enrolment:
        secret = cred.new_totp_secret()
        key = self.keys.load(s, row.key_id)
        row.totp_secret_enc = key.encrypt(secret, table=T, column="totp_secret", row_id=row.id)
        row.totp_last_step = None
        return Enrolment(to_user(row), secret,
                         cred.provisioning_uri(secret, row.name, self.issuer))

    def add(self, name: str, role: Role | str, password: str, *, endpoint: str | None = None,
            team: str | None = None, actor: str) -> Enrolment:
        if not _NAME.match(name):
            raise InvalidInput("username: 2-64 characters, lowercase letters, digits, "
                               "'.', '_' or '-', starting with a letter",
                               details={"field": "username"})
        try:
            role = Role(role)
        except ValueError:
            raise InvalidInput("unknown role", details={"field": "role"}) from None
        problem = cred.password_problem(password)
        if problem:
            raise InvalidInput(f"password: {problem}", details={"field": "password"})
        endpoint = _check_label(endpoint_name(endpoint), "endpoint")
        team = _check_label(team, "team")
        password_hash = cred.hash_password(password)
        user_id = "u-" + secrets.token_hex(8)
        now = self.clock()
        try:
            with self.db.session() as s:
                key = self.keys.create(s, "user", user_id)
                s.flush()  # the key row first: users.key_id references it
                row = UserRow(id=user_id, name=name, role=role.value, endpoint=endpoint,
                              team=team, password_hash=password_hash, key_id=key.key_id,
                              totp_secret_enc=b"", disabled=False, created_at=now,
                              updated_at=now)
                s.add(row)
                s.flush()
                enrolment = self._enrol(s, row)
                self.audit.append(actor, "user.add", name, {
                    "role": role.value, "endpoint": endpoint, "team": team}, session=s)
        except IntegrityError:
            raise Conflict("a user with this name or endpoint exists",
                           details={"username": name, "endpoint": endpoint}) from None
        return enrolment

    def reset_mfa(self, name: str, *, actor: str) -> Enrolment:
        """A new TOTP secret; the old one stops working and every session ends."""
        with self.db.session() as s:
            row = self._existing(s, name)
            enrolment = self._enrol(s, row)
            row.updated_at = self.clock()
            s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
            self.audit.append(actor, "user.reset_mfa", name, {}, session=s)
        return enrolment

    def set_disabled(self, name: str, disabled: bool, *, actor: str) -> User:
        with self.db.session() as s:
            row = self._existing(s, name)
            row.disabled, row.updated_at = disabled, self.clock()
            if disabled:
                s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
            self.audit.append(actor, "user.disable" if disabled else "user.enable", name, {},
                              session=s)
            return to_user(row)

    def set_password(self, name: str, password: str, *, actor: str) -> None:
        problem = cred.password_problem(password)
        if problem:
            raise InvalidInput(f"password: {problem}", details={"field": "password"})
        password_hash = cred.hash_password(password)
        with self.db.session() as s:
            row = self._existing(s, name)
            row.password_hash, row.updated_at = password_hash, self.clock()
            s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
            self.audit.append(actor, "user.password", name, {}, session=s)
