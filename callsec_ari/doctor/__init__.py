"""``callsec doctor``: check the connected Asterisk for places where digits could leak.

It connects over ARI and AMI with callsec's own settings, gathers facts
(:mod:`callsec_ari.doctor.gather`), runs small pure checks over them
(:mod:`callsec_ari.doctor.checks`, :mod:`callsec_ari.doctor.access`) and prints each finding
with its id, severity, what leaks, where, and how to fix it. Exit codes: 0 no finding of
severity warning or higher, 1 such findings, 2 usage or configuration error. ``--json`` prints
the findings as a JSON list of ``{id, severity, what, where, fix}`` objects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from callsec_ari.config import Settings
from callsec_ari.doctor.checks import CHECKS, run_checks
from callsec_ari.doctor.gather import gather
from callsec_ari.doctor.model import Facts, Finding, Severity

__all__ = ["CHECKS", "Facts", "Finding", "Severity", "exit_code", "register", "run_checks"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check the connected Asterisk for places where digits could leak",
        description="Connects over ARI and AMI (callsec's [ari] and [ami] settings) and reports"
        " where digits could leak: direct media, trunk DTMF modes, DTMF in logger / CEL / AMI,"
        " plain HTTP or AMI on the network, default passwords, the development outbox,"
        " recordings callsec cannot mute. Exit 0: clean; 1: findings of severity warning or"
        " higher; 2: usage or configuration error.")
    parser.add_argument("--json", action="store_true",
                        help="print the findings as a JSON list (id, severity, what, where, fix)")
    parser.add_argument("--ari-url", metavar="URL",
                        help="the Asterisk to check (default: the first of [ari] urls)")
    parser.add_argument("--listen", type=float, default=0.0, metavar="SECONDS",
                        help="also watch callsec's AMI connection this long for DTMF events"
                        " of live calls (default: only while checking)")
    parser.set_defaults(handler=_cmd_doctor)


def exit_code(findings: Sequence[Finding]) -> int:
    return 1 if any(f.severity >= Severity.WARNING for f in findings) else 0


def _cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    url = args.ari_url or settings.ari.urls[0]
    if not url.startswith(("http://", "https://")):
        print("callsec doctor: --ari-url must start with http:// or https://", file=sys.stderr)
        return 2
    if args.listen < 0:
        print("callsec doctor: --listen must not be negative", file=sys.stderr)
        return 2
    facts = asyncio.run(gather(settings, ari_url=url, listen=args.listen))
    findings = run_checks(facts)
    if args.json:
        json.dump([f.to_json() for f in findings], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(facts, findings, sys.stdout)
    return exit_code(findings)


def print_report(facts: Facts, findings: Sequence[Finding], out: TextIO) -> None:
    ami = facts.settings.ami
    print(f"callsec doctor: Asterisk at {facts.ari_url}"
          + (f", AMI {ami.host}:{ami.port} as {ami.username}" if ami.enabled else ", AMI off"),
          file=out)
    for finding in findings:
        print(f"\n{finding.severity.label.upper():8} {finding.id}\n"
              f"  what:  {finding.what}\n  where: {finding.where}\n  fix:   {finding.fix}",
              file=out)
    serious = sum(f.severity >= Severity.WARNING for f in findings)
    info = len(findings) - serious
    if serious:
        print(f"\n{serious} finding(s) where digits can leak, {info} informational", file=out)
    else:
        print(f"\nclean: no finding of severity warning or higher ({info} informational)",
              file=out)
