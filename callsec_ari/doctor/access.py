"""``callsec doctor``'s checks of who can see digits: AMI users and events, plain HTTP and
AMI on the network, default and weak passwords, the development outbox, recordings callsec
cannot mute. Pure functions ``Facts -> findings`` (listed in :data:`checks.CHECKS`).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from callsec_ari.doctor.model import Facts, Finding, Severity, is_loopback, is_true, names

_DTMF_CLASSES = {"dtmf", "all"}
_WEAK = {"callsec", "admin", "password", "secret", "changeme", "asterisk", "amp111"}


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def loopback_only(facts: Facts) -> bool:
    """callsec, its Asterisk and its HTTP API talk over loopback only (a development set-up)."""
    s = facts.settings
    return (all(is_loopback(_host(url)) for url in s.ari.urls) and is_loopback(s.web.host)
            and (not s.ami.enabled or is_loopback(s.ami.host)))


def _classes(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


def _weak(user: str, secret: str | None) -> bool:
    return secret is not None and (secret == user or secret.lower() in _WEAK or len(secret) < 8)


def _ami_users(facts: Facts) -> list[tuple[str, dict[str, str | None]]]:
    return [(c.name, {"read": c.get("read"), "secret": c.get("secret")})
            for c in facts.config("manager.conf") or [] if c.name != "general"]


# -- AMI --------------------------------------------------------------------------------------
def check_ami_readers(facts: Facts) -> Iterator[Finding]:
    own = facts.settings.ami.username
    readers = [f"{user} (callsec's own user)" if user == own else user
               for user, opts in _ami_users(facts) if _classes(opts["read"]) & _DTMF_CLASSES]
    if readers:
        yield Finding("ami-user-reads-dtmf", Severity.WARNING,
                      "AMI users with read class dtmf or all receive DTMFBegin/DTMFEnd events:"
                      " every digit a caller types", f"manager.conf users {names(readers)}",
                      "drop dtmf and all from read= (name the classes a user needs)")
    if facts.observed_events:
        yield Finding("ami-dtmf-events-observed", Severity.CRITICAL,
                      "callsec's own AMI connection received DTMF events while doctor ran"
                      f" ({names(sorted(set(facts.observed_events)))})",
                      f"manager.conf [{own}] read", "remove dtmf and all from the user's read=")


def check_ami_network(facts: Facts) -> Iterator[Finding]:
    general = facts.section("manager.conf", "general")
    if general is not None and is_true(general.get("enabled")):
        bind = general.get("bindaddr") or "0.0.0.0"  # Asterisk's default
        if not is_loopback(bind):
            yield Finding("ami-plain-non-loopback", Severity.WARNING,
                          f"AMI listens without TLS on {bind}: logins, channel variables and"
                          " any event a user may read cross the network in plain text",
                          "manager.conf [general] bindaddr",
                          "bind AMI to 127.0.0.1 (callsec runs next to Asterisk), or use"
                          " tlsenable with a firewall")
    host = facts.settings.ami.host
    if facts.settings.ami.enabled and not is_loopback(host):
        yield Finding("ami-plain-non-loopback", Severity.WARNING,
                      f"callsec reaches AMI in plain text over the network ({host})",
                      "[ami] host", "run callsec on the Asterisk host ([ami] host = 127.0.0.1)")


# -- HTTP / ARI -------------------------------------------------------------------------------
def check_http(facts: Facts) -> Iterator[Finding]:
    general = facts.section("http.conf", "general")
    if general is not None and is_true(general.get("enabled")):
        bind = general.get("bindaddr")
        if bind and not is_loopback(bind):
            yield Finding("http-plain-non-loopback", Severity.WARNING,
                          f"Asterisk's HTTP server (ARI) listens without TLS on {bind}: ARI"
                          " passwords and events (ChannelDtmfReceived: every digit) are readable"
                          " on the network", "http.conf [general] bindaddr",
                          "bindaddr = 127.0.0.1 and, for remote callsec hosts, tlsenable ="
                          " yes with tlsbindaddr (config/asterisk/http.conf)")
    plain = [url for url in facts.settings.ari.urls
             if url.startswith("http://") and not is_loopback(_host(url))]
    if plain:
        yield Finding("ari-url-plain-http", Severity.WARNING,
                      "callsec talks ARI over plain HTTP across the network: its events carry"
                      " every digit a caller types", f"[ari] urls {names(plain)}",
                      "use https:// (Asterisk http.conf tlsenable) or run callsec on the"
                      " Asterisk host")


# -- passwords --------------------------------------------------------------------------------
def check_default_passwords(facts: Facts) -> Iterator[Finding]:
    s = facts.settings
    exposed_ari = [u for u in s.ari.urls if not is_loopback(_host(u))]
    if exposed_ari and _weak(s.ari.username, s.ari.password):
        yield Finding("config-default-password", Severity.CRITICAL,
                      "callsec uses a default or weak ARI password on a non-loopback server",
                      "[ari] password", "set a long random password in ari.conf and [ari]"
                      " password_file")
    if s.ami.enabled and not is_loopback(s.ami.host) and _weak(s.ami.username, s.ami.password):
        yield Finding("config-default-password", Severity.CRITICAL,
                      "callsec uses a default or weak AMI secret on a non-loopback server",
                      "[ami] password", "set a long random secret in manager.conf and [ami]"
                      " password_file")


def check_weak_secrets(facts: Facts) -> Iterator[Finding]:
    manager = facts.section("manager.conf", "general")
    http = facts.section("http.conf", "general")
    ami_exposed = manager is not None and not is_loopback(manager.get("bindaddr") or "0.0.0.0")
    ari_exposed = http is not None and not is_loopback(http.get("bindaddr"))
    weak_ami = [u for u, opts in _ami_users(facts) if _weak(u, opts["secret"])]
    weak_ari = [c.name for c in facts.config("ari.conf") or []
                if (c.get("type") or "").lower() == "user"
                and (c.get("password_format") or "plain").lower() == "plain"
                and _weak(c.name, c.get("password"))]
    for what, users, exposed, where in (("AMI", weak_ami, ami_exposed, "manager.conf"),
                                        ("ARI", weak_ari, ari_exposed, "ari.conf")):
        if users:
            yield Finding("asterisk-weak-secret",
                          Severity.WARNING if exposed else Severity.INFO,
                          f"{what} users whose secret is short, common or their own name"
                          + ("" if exposed else " (reachable on loopback only)"),
                          f"{where} users {names(users)}",
                          "give every user a long random secret (ari.conf: password_format ="
                          " crypt)")


# -- callsec itself ---------------------------------------------------------------------------
def check_outbox(facts: Facts) -> Iterator[Finding]:
    s = facts.settings
    using = [kind for kind, backend in (("sms", s.sms.backend), ("email", s.email.backend))
             if backend == "outbox"]
    if using:
        dev = loopback_only(facts)
        yield Finding("sms-outbox", Severity.INFO if dev else Severity.WARNING,
                      "verification codes go to the development outbox (plain files) instead of"
                      " the caller's phone" + (" (fine for a loopback-only development set-up)"
                                               if dev else ""),
                      f"[{'] backend, ['.join(using)}] backend = outbox ({s.sms.outbox_dir})",
                      "configure a real SMS / e-mail backend ([sms] backend = twilio or http,"
                      " [email] backend = smtp)")


def check_recordings(facts: Facts) -> Iterator[Finding]:
    modules = facts.modules
    if modules is None:
        return
    if "app_mixmonitor" not in modules:
        yield Finding("mixmonitor-not-loaded", Severity.INFO,
                      "app_mixmonitor is not loaded: callsec mutes MixMonitor recordings during"
                      " captures; recordings made any other way keep the caller's tones",
                      "modules.conf", "record calls with MixMonitor (callsec mutes it) or make"
                      " sure your recorder pauses during captures")
        return
    if not facts.settings.ami.enabled:
        reason = "[ami] enabled = no"
    elif facts.can_mute is False:
        reason = "the AMI user may not send MixMonitorMute (write class call or system)"
    else:
        return
    yield Finding("recording-mute-unavailable", Severity.WARNING,
                  f"MixMonitor recordings cannot be muted during captures: {reason}",
                  f"[ami] / manager.conf [{facts.settings.ami.username}]",
                  "enable [ami] with a user that has write = system,call")
