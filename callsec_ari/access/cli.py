"""``callsec users ...``: staff accounts (no logic: it lives in :mod:`.users`)."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import qrcode

from callsec_ari.access.auth import Auth
from callsec_ari.access.roles import Role, matrix, permissions_of
from callsec_ari.access.users import Enrolment, UserStore
from callsec_ari.config import Settings
from callsec_ari.core.errors import InvalidInput
from callsec_ari.store.cli import actor
from callsec_ari.store.context import open_store


@contextmanager
def _users(settings: Settings) -> Iterator[UserStore]:
    store = open_store(settings, upgrade=False)
    try:
        yield UserStore(store.db, store.keys, store.audit,
                        issuer=settings.verification.company_name)
    finally:
        store.close()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise InvalidInput("no terminal to ask for a password: use --password-stdin")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("password again: "):
        raise InvalidInput("the passwords differ")
    return first


def qr_text(data: str) -> str:
    """A terminal QR code: pure ASCII (two characters per module, dark on light)."""
    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(data)
    code.make(fit=True)
    rows = code.get_matrix()
    return "\n".join("".join("##" if dark else "  " for dark in row) for row in rows)


def print_enrolment(enrolment: Enrolment, *, qr: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write("Add this account to an authenticator app (scan the code or enter the URI):\n")
    out.write(enrolment.uri + "\n")
    if qr:
        out.write(qr_text(enrolment.uri) + "\n")
    out.flush()


def _describe(role: str, endpoint: str | None, team: str | None) -> str:
    parts = [f"role {role}"]
    if endpoint:
        parts.append(f"endpoint {endpoint}")
    if team:
        parts.append(f"team {team}")
    return ", ".join(parts)


def _add(args: argparse.Namespace, settings: Settings) -> int:
    password = _read_password(args.password_stdin)
    with _users(settings) as users:
        enrolment = users.add(args.name, args.role, password, endpoint=args.endpoint,
                              team=args.team, actor=actor())
    u = enrolment.user
    print(f"user {u.name} added ({_describe(u.role.value, u.endpoint, u.team)})")
    print_enrolment(enrolment, qr=not args.no_qr)
    return 0


def _reset_mfa(args: argparse.Namespace, settings: Settings) -> int:
    with _users(settings) as users:
        enrolment = users.reset_mfa(args.name, actor=actor())
    print(f"user {args.name}: new TOTP secret; the old one no longer works, sessions ended")
    print_enrolment(enrolment, qr=not args.no_qr)
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with _users(settings) as users:
        for u in users.all():
            state = "disabled" if u.disabled else "active"
            print(f"{u.name}\t{u.role.value}\t{u.endpoint or '-'}\t{u.team or '-'}\t{state}")
    return 0


def _set_disabled(args: argparse.Namespace, settings: Settings) -> int:
    disabled = args.users_command == "disable"
    with _users(settings) as users:
        users.set_disabled(args.name, disabled, actor=actor())
    print(f"user {args.name} {'disabled (sessions ended)' if disabled else 'enabled'}")
    return 0


def _unlock(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings, upgrade=False)
    try:
        users = UserStore(store.db, store.keys, store.audit,
                          issuer=settings.verification.company_name)
        auth = Auth(store.db, users, store.audit, settings.web,
                    remote_key=store.keyring.blind_index_key())
        count = auth.unlock(args.name, actor=actor())
    finally:
        store.close()
    print(f"user {args.name}: {count} failed attempt(s) forgotten, no login delay left")
    return 0


def _passwd(args: argparse.Namespace, settings: Settings) -> int:
    password = _read_password(args.password_stdin)
    with _users(settings) as users:
        users.set_password(args.name, password, actor=actor())
    print(f"user {args.name}: password changed, sessions ended")
    return 0


def _roles(args: argparse.Namespace, settings: Settings) -> int:
    print(matrix())
    if args.verbose:
        for role in Role:
            print(f"{role.value}: {', '.join(permissions_of(role)) or '-'}")
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser("users", help="staff accounts: roles, passwords, TOTP")
    us = parser.add_subparsers(dest="users_command", metavar="COMMAND")
    us.required = True
    p = us.add_parser("add", help="add a user; prints the TOTP otpauth:// URI and a QR code")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--endpoint", help="the agent's phone endpoint (e.g. agent100)")
    p.add_argument("--team", help="team name (supervisors see their team's calls)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input")
    p.add_argument("--no-qr", action="store_true", help="print the URI only")
    p.set_defaults(handler=_add)
    p = us.add_parser("reset-mfa", help="new TOTP secret (ends the user's sessions)")
    p.add_argument("name")
    p.add_argument("--no-qr", action="store_true", help="print the URI only")
    p.set_defaults(handler=_reset_mfa)
    us.add_parser("list", help="list users").set_defaults(handler=_list)
    for name, text in (("disable", "disable a user (ends the user's sessions)"),
                       ("enable", "enable a disabled user")):
        p = us.add_parser(name, help=text)
        p.add_argument("name")
        p.set_defaults(handler=_set_disabled)
    p = us.add_parser("unlock", help="end a login delay (forget failed attempts)")
    p.add_argument("name")
    p.set_defaults(handler=_unlock)
    p = us.add_parser("passwd", help="set a new password (ends the user's sessions)")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(handler=_passwd)
    p = us.add_parser("roles", help="print the permission table")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(handler=_roles)
