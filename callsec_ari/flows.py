"""Which flow a ``Stasis(callsec,<name>,...)`` line or an ``agi://.../<name>`` request starts,
built from the settings. The same registry serves the ARI and the FastAGI adapters."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from callsec_ari.approval.flow import approval_options
from callsec_ari.capture.entry import EntryOptions, FieldEntry
from callsec_ari.capture.fields import FieldKind, ValidationContext, parse_fields
from callsec_ari.capture.protocol import new_capture_id
from callsec_ari.capture.selfservice import SelfServiceCaptureFlow
from callsec_ari.config import PolicySettings, Settings
from callsec_ari.connect.captures import CaptureOptions
from callsec_ari.connect.flow import ConnectFlow, ConnectOptions
from callsec_ari.core.errors import ConfigError
from callsec_ari.core.events import CallStarted
from callsec_ari.core.flow import Flow, Table
from callsec_ari.probe.flow import ProbeFlow
from callsec_ari.verification.flow import VerificationFlow
from callsec_ari.verification.options import VerificationOptions

FlowFactory = Callable[[str, CallStarted], Flow]


def verification_options(settings: Settings, policy: PolicySettings, *,
                         continue_after: bool) -> VerificationOptions:
    v = settings.verification
    return VerificationOptions(
        require_code=policy.require_code, trusted_attestation=policy.trusted_attestation,
        methods=policy.methods, code_digits=v.code_digits, code_ttl=float(v.code_ttl_seconds),
        max_checks=v.max_checks, max_sends=v.max_sends,
        customer_number_tries=v.customer_number_tries,
        first_digit_timeout=v.first_digit_timeout_seconds,
        inter_digit_timeout=v.inter_digit_timeout_seconds, continue_after=continue_after)


_FIELD_NAMES = frozenset(kind.value for kind in FieldKind)


class FlowRegistry:
    def __init__(self, settings: Settings, today: Callable[[], date] = date.today) -> None:
        self.settings = settings
        self.today = today

    def validation_context(self) -> ValidationContext:
        capture, today = self.settings.capture, self.today()
        return ValidationContext(year=today.year, month=today.month,
                                 allowed_brands=frozenset(capture.card_brands),
                                 iban_country=capture.iban_country,
                                 national_id_kind=capture.national_id_kind,
                                 postal_code_format=capture.postal_code_format,
                                 account_min_digits=capture.account_number_min_digits,
                                 account_max_digits=capture.account_number_max_digits)

    def entry_options(self, started: CallStarted) -> EntryOptions:
        capture = self.settings.capture
        slow = started.option("slow") in ("1", "yes", "true")
        return EntryOptions(max_attempts=capture.max_attempts,
                            confirm_twice=capture.confirm_twice,
                            first_digit_timeout=capture.first_digit_timeout_seconds,
                            inter_digit_timeout=capture.inter_digit_timeout_seconds,
                            slow_factor=capture.slow_entry_factor if slow else 1.0,
                            language=started.language)

    def capture_options(self, started: CallStarted) -> CaptureOptions:
        capture = self.settings.capture
        codes = (("card", capture.feature_card), ("bank", capture.feature_bank),
                 ("id", capture.feature_id), ("bank_us", capture.feature_bank_us))
        return CaptureOptions(context=self.validation_context(),
                              entry=self.entry_options(started),
                              capture_timeout=capture.capture_timeout_seconds,
                              feature_codes=tuple((code, name) for name, code in codes if code),
                              new_id=new_capture_id, mode=capture.mode,
                              fallback_to_bridge=capture.talk_through_fallback == "bridge")

    def capture(self, call_id: str, started: CallStarted) -> Flow:
        """Self-service capture; ``fields=card_number,expiry,cvv`` (InvalidInput if unknown).

        In ``AGI(agi://.../capture?fields=card_number,expiry,cvv)`` the dialplan splits the
        list at its commas: ``expiry`` and ``cvv`` arrive as AGI arguments and join the list.
        """
        listed = [started.option("fields"), *(a for a in started.args if a in _FIELD_NAMES)]
        fields = parse_fields(",".join(f for f in listed if f) or "card_number,expiry,cvv")
        entry = FieldEntry(new_capture_id(), tuple(f.value for f in fields),
                           self.validation_context(), self.entry_options(started))
        return SelfServiceCaptureFlow(call_id, entry, customer_ref=started.option("customer"))

    def _policy(self, started: CallStarted) -> PolicySettings:
        try:
            return self.settings.policy(started.option("policy") or None)
        except ConfigError:
            # An unknown policy name in the dialplan must not open the door: use the default.
            return self.settings.policy(None)

    def verify(self, call_id: str, started: CallStarted) -> Flow:
        options = verification_options(self.settings, self._policy(started), continue_after=True)
        return VerificationFlow(call_id, options)

    def connect(self, call_id: str, started: CallStarted) -> Flow:
        policy = self._policy(started)
        options = verification_options(self.settings, policy, continue_after=False)
        dial = started.args[0] if started.args else started.option("dial")
        return ConnectFlow(call_id, VerificationFlow(call_id, options), ConnectOptions(
            dial_string=dial, connect_unverified=policy.connect_unverified,
            on_agent_hangup=self.settings.capture.on_agent_hangup,
            captures=self.capture_options(started),
            approvals=approval_options(self.settings)))

    @staticmethod
    def probe(call_id: str, started: CallStarted) -> Flow:
        return ProbeFlow(call_id)

    def as_mapping(self) -> dict[str, FlowFactory]:
        return {"verify": self.verify, "connect": self.connect, "capture": self.capture,
                "probe": self.probe}


# -- ``callsec flows``: each flow drawn from its transition table ------------------------------

#: The ``Stasis(callsec,<name>)`` flows and their tables (``connect`` runs ``verify`` first).
TABLES: dict[str, Table[Any, Any]] = {
    "verify": VerificationFlow.TABLE, "connect": ConnectFlow.TABLE,
    "capture": SelfServiceCaptureFlow.TABLE, "probe": ProbeFlow.TABLE}
NEWLINE = "\\n"  # a line break inside a dot label
PAGE = Path(__file__).resolve().parent.parent / "docs" / "flows.md"


def to_dot(name: str, table: Table[Any, Any]) -> str:
    """Graphviz dot text: states as nodes (final ones doubled), events as edge labels."""
    lines = [f'digraph "{name}" {{', "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    lines += [f'  "{s.name}"{" [peripheries=2]" if s in table.final else ""};'
              for s in table.states.__members__.values()]
    lines += [f'  "{a.name}" -> "{b.name}" [label="{NEWLINE.join(events)}"];'
              for (a, b), events in table.transitions().items()]
    return "\n".join([*lines, "}"]) + "\n"


def to_mermaid(table: Table[Any, Any]) -> str:
    first = next(iter(table.states.__members__.values()))
    lines = ["stateDiagram-v2", "  direction LR", f"  [*] --> {first.name}"]
    lines += [f"  {a.name} --> {b.name}: {', '.join(events)}"
              for (a, b), events in table.transitions().items()]
    lines += [f"  {s.name} --> [*]" for s in table.final]
    return "\n".join(lines) + "\n"


def flows_page() -> str:
    """``docs/flows.md``: every flow's diagram (regenerate: ``callsec flows --page``)."""
    out = ["# Call flows", "",
           "Generated from the transition tables (`callsec flows --page > docs/flows.md`; a unit",
           "test fails when this page is stale). Each arrow is a table entry: the events that",
           "lead from one state to the next. `callsec flows --dot [FLOW]` prints Graphviz dot.",
           ""]
    for name, table in TABLES.items():
        ignored = ", ".join(sorted(e.__name__ for e in table.ignored)) or "none"
        out += [f"## {name}", "", "```mermaid", to_mermaid(table).rstrip(), "```", "",
                f"Ignored in a state without an entry for them: {ignored}.", ""]
    return "\n".join(out)


def _cmd_flows(args: argparse.Namespace, settings: object) -> int:
    if args.page:
        sys.stdout.write(flows_page())
        return 0
    names = [args.flow] if args.flow else list(TABLES)
    for name in names:
        sys.stdout.write(to_dot(name, TABLES[name]) if args.dot else to_mermaid(TABLES[name]))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("flows", help="draw the call flows from their transition tables")
    p.add_argument("flow", nargs="?", choices=sorted(TABLES), help="one flow (default: all)")
    p.add_argument("--dot", action="store_true", help="Graphviz dot (default: mermaid)")
    p.add_argument("--page", action="store_true", help="the docs/flows.md page")
    p.set_defaults(handler=_cmd_flows, needs_config=False)
