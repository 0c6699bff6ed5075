"""``callsec doctor``'s checks: small pure functions ``Facts -> findings``, listed in
:data:`CHECKS`. Each finding says what leaks, where, and how to fix it.

Severity: ``warning`` or ``critical`` makes ``callsec doctor`` exit 1; ``info`` names a risk that
needs an operator's action (a debug switch, a shared log) or is harmless on loopback only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from callsec_ari.doctor import access
from callsec_ari.doctor.model import Facts, Finding, Severity, is_true, names

Check = Callable[[Facts], Iterable[Finding]]

CDR_BACKENDS = ("cdr_csv", "cdr_custom", "cdr_sqlite3_custom", "cdr_manager", "cdr_pgsql",
                "cdr_odbc", "cdr_adaptive_odbc", "cdr_radius", "cdr_tds", "cdr_beanstalkd")
_SAFE_TRUNK_DTMF = {"auto", "auto_info"}


# -- reachability -----------------------------------------------------------------------------
def check_reachability(facts: Facts) -> Iterator[Finding]:
    if facts.ari_error:
        yield Finding("ari-unreachable", Severity.WARNING,
                      "doctor could not query ARI: endpoint, logger and module checks are"
                      f" incomplete ({facts.ari_error})", f"[ari] urls: {facts.ari_url}",
                      "start Asterisk or fix [ari] urls / username / password, then run"
                      " doctor again")
    if not facts.settings.ami.enabled:
        yield Finding("ami-disabled", Severity.INFO,
                      "[ami] enabled = no: doctor skipped the checks that read Asterisk's"
                      " config files (manager.conf, cel.conf, http.conf, ari.conf)",
                      "[ami] enabled", "enable AMI for callsec (see config/asterisk/manager.conf)"
                      " to let doctor check them")
    elif facts.ami_error:
        yield Finding("ami-unreachable", Severity.WARNING,
                      f"doctor could not log in to AMI ({facts.ami_error}): config-file checks"
                      " skipped, and callsec cannot mute MixMonitor recordings",
                      f"[ami] host/port {facts.settings.ami.host}:{facts.settings.ami.port}",
                      "fix [ami] and the user in manager.conf (config/asterisk/manager.conf)")
    elif facts.config_error:
        yield Finding("ami-config-denied", Severity.WARNING,
                      f"AMI refused GetConfig ({facts.config_error}): config-file checks skipped",
                      f"manager.conf [{facts.settings.ami.username}] write",
                      "give callsec's AMI user write = system (GetConfig, ModuleCheck) and call"
                      " (MixMonitorMute)")


# -- PJSIP ------------------------------------------------------------------------------------
def check_direct_media(facts: Facts) -> Iterator[Finding]:
    endpoints = facts.endpoints or {}
    direct = [name for name, opts in endpoints.items() if is_true(opts.get("direct_media"))]
    if direct:
        yield Finding("pjsip-direct-media", Severity.WARNING,
                      "PJSIP endpoints with direct media: a bridge may go native RTP, digits"
                      " then flow phone to phone and callsec never sees them",
                      f"pjsip.conf endpoints {names(direct)}",
                      "set direct_media = no on agent phones and trunks"
                      " (config/asterisk/pjsip.conf)")


def check_dtmf_modes(facts: Facts) -> Iterator[Finding]:
    endpoints = facts.endpoints or {}
    if facts.trunks is None and endpoints:
        yield Finding("pjsip-trunks-unknown", Severity.INFO,
                      "doctor could not tell trunks from phones (pjsip.conf unreadable), so it"
                      " did not check the trunks' dtmf_mode", "pjsip.conf",
                      "allow GetConfig for callsec's AMI user, or check by hand: trunks want"
                      " dtmf_mode = auto")
    trunks = facts.trunks or set()
    risky = [n for n in trunks if n in endpoints
             and endpoints[n].get("dtmf_mode", "").lower() not in _SAFE_TRUNK_DTMF | {"inband"}]
    if risky:
        yield Finding("pjsip-trunk-dtmf-mode", Severity.WARNING,
                      "trunks with a fixed dtmf_mode (rfc4733 or info): when the carrier sends"
                      " in-band tones instead, Asterisk detects no digit and the tones pass as"
                      " audio to agents and recordings",
                      f"pjsip.conf trunks {names(risky)}",
                      "set dtmf_mode = auto on trunks (RFC 4733 when offered, in-band detection"
                      " otherwise)")
    inband = [n for n, o in endpoints.items() if o.get("dtmf_mode", "").lower() == "inband"]
    if inband:
        yield Finding("pjsip-dtmf-inband", Severity.INFO,
                      "endpoints with dtmf_mode = inband: the detector squelches tones"
                      " imperfectly (a tone's leading edge can reach a mixed bridge) and digits"
                      " passed to such an endpoint are regenerated as audible tones",
                      f"pjsip.conf endpoints {names(inband)}",
                      "prefer auto (trunks) or rfc4733 (phones that support it)")


# -- logs, CEL, CDR ---------------------------------------------------------------------------
def check_logger(facts: Facts) -> Iterator[Finding]:
    channels = facts.log_channels or []
    dtmf = [c.name for c in channels if "dtmf" in c.levels]
    if dtmf:
        yield Finding("logger-dtmf", Severity.WARNING,
                      "logger channels with the dtmf level write every digit a caller types",
                      f"logger.conf [logfiles] {names(dtmf)}",
                      "remove dtmf (and *) from every logger.conf channel; `logger reload`")
    debug = [c.name for c in channels if "debug" in c.levels]
    if debug:
        options = facts.section("asterisk.conf", "options")
        level = (options.get("debug", "0") if options else "0") or "0"
        active = level.strip().isdigit() and int(level) > 0
        yield Finding("logger-debug", Severity.WARNING if active else Severity.INFO,
                      "logger channels with the debug level: at `core set debug 1` and above,"
                      " Asterisk's core logs each DTMF digit it receives"
                      + (f" (asterisk.conf debug = {level})" if active else ""),
                      f"logger.conf [logfiles] {names(debug)}",
                      "keep debug out of persistent log files in production, or debug = 0")
    verbose = [c.name for c in channels if c.kind != "console" and "verbose" in c.levels]
    if verbose:
        yield Finding("debug-commands-log-digits", Severity.INFO,
                      "`agi set debug on`, `pjsip set logger on` and `rtp set debug on` print"
                      " AGI results, SIP INFO bodies and RFC 4733 events (digits) at the verbose"
                      " level: these files keep them while such a switch is on",
                      f"logger.conf [logfiles] {names(verbose)}",
                      "never turn those debug switches on in production, or drop verbose from"
                      " persistent log files")


def check_cel(facts: Facts) -> Iterator[Finding]:
    general = facts.section("cel.conf", "general")
    if general is None or not is_true(general.get("enable")):
        return
    events = {e.strip().upper() for line in general.values("events") for e in line.split(",")}
    if events & {"DTMF", "ALL"}:
        yield Finding("cel-dtmf", Severity.WARNING,
                      "CEL records DTMF events: every digit a caller types becomes a CEL row"
                      " (and an AMI CEL event)", "cel.conf [general] events",
                      "list CEL events explicitly without DTMF (ALL includes it)")


def check_cdr(facts: Facts) -> Iterator[Finding]:
    loaded = sorted(m for m in CDR_BACKENDS if m in (facts.modules or set()))
    if loaded:
        yield Finding("cdr-caller-numbers", Severity.INFO,
                      "CDR backends are loaded: they store caller numbers (personal data),"
                      " though no digits typed during a call",
                      f"modules {', '.join(loaded)}",
                      "limit access and retention of CDRs, or noload the backends you do not"
                      " need")


#: Every check, in report order.
CHECKS: tuple[Check, ...] = (
    check_reachability,
    check_direct_media,
    check_dtmf_modes,
    check_logger,
    check_cel,
    access.check_ami_readers,
    access.check_ami_network,
    access.check_http,
    access.check_default_passwords,
    access.check_weak_secrets,
    access.check_outbox,
    access.check_recordings,
    check_cdr,
)


def run_checks(facts: Facts, checks: Iterable[Check] = CHECKS) -> list[Finding]:
    """All findings, most severe first (stable within a severity)."""
    findings = [finding for check in checks for finding in check(facts)]
    return sorted(findings, key=lambda f: -f.severity)
