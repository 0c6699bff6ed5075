"""The sections: one frozen dataclass per section, every key declared with its default."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONFIG_PATH = Path("config/callsec.conf")


class Secret(str):
    """A string that never shows its value in ``repr`` (config dumps, tracebacks)."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


@dataclass(frozen=True, kw_only=True)
class AriSettings:
    """One or more Asterisk servers, reached over ARI (REST + events websocket)."""

    #: Comma-separated base URLs, one per Asterisk server (``http://host:port``).
    urls: tuple[str, ...] = ("http://127.0.0.1:18088",)
    username: str = "callsec"
    password: Secret = Secret("callsec")
    app: str = "callsec"
    reconnect_min_seconds: float = 0.5
    reconnect_max_seconds: float = 30.0
    request_timeout_seconds: float = 5.0
    #: When no event arrived for this long, send the app a user event and expect it back (a
    #: late teardown of an old websocket can remove or deactivate a fresh registration).
    app_check_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class AmiSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 15038
    username: str = "callsec"
    password: Secret = Secret("callsec")


@dataclass(frozen=True, kw_only=True)
class AgiSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 4573
    #: Addresses or networks (CIDR) whose connections are served: the Asterisk servers. Any
    #: other peer is closed before its AGI environment is read, logged and audited.
    allowed_peers: tuple[str, ...] = ("127.0.0.0/8", "::1")


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    #: SQLAlchemy URL; ``sqlite:///var/callsec.db`` (WAL) or ``postgresql+psycopg://...``.
    url: Secret = Secret("sqlite:///var/callsec.db")
    #: Run the migrations on ``callsec run``.
    auto_upgrade: bool = True
    #: SQLite: how long a writer waits for another one's lock.
    busy_timeout_ms: int = 5000
    #: PostgreSQL: connect timeout (an unreachable server fails fast, naming the host).
    connect_timeout_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class CryptoSettings:
    #: Directory of versioned key-encryption keys (``kek-0001.key`` ...), created 0700 by
    #: ``callsec keys init`` (keys are never created implicitly).
    keyring_dir: Path = Path("var/keys")
    #: Optional inline KEK (base64, 32 bytes) used instead of the keyring's newest key.
    kek: Secret = Secret("")
    #: HMAC key for the blind index (base64, 32 bytes); default: ``<keyring_dir>/blind-index.key``.
    blind_index_key: Secret = Secret("")
    #: Where the KEKs live: ``file`` (``keyring_dir``, for development) or ``pkcs11`` (inside a
    #: PKCS#11 token; the blind-index and audit keys stay in ``keyring_dir``).
    backend: str = "file"
    #: pkcs11: the token's PKCS#11 library, e.g. ``/usr/lib/softhsm/libsofthsm2.so``.
    pkcs11_module: Path | None = None
    #: pkcs11: the label of the token holding the KEKs.
    pkcs11_token_label: str = ""
    #: pkcs11: the token's user PIN (better: ``pkcs11_pin_file``).
    pkcs11_pin: Secret = Secret("")
    #: pkcs11: KEK version N is the AES key object labelled ``<prefix>000N``.
    pkcs11_key_prefix: str = "callsec-kek-"


@dataclass(frozen=True, kw_only=True)
class SmsSettings:
    #: ``outbox`` | ``twilio`` | ``http``
    backend: str = "outbox"
    outbox_dir: Path = Path("var/outbox")
    url: str = ""
    account_sid: str = ""
    auth_token: Secret = Secret("")
    hmac_key: Secret = Secret("")
    sender: str = "CallSec"
    timeout_seconds: float = 2.0
    retries: int = 1
    #: Total time a caller may wait for delivery, retries included.
    budget_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class EmailSettings:
    #: ``outbox`` | ``smtp``
    backend: str = "outbox"
    host: str = "127.0.0.1"
    port: int = 25
    #: ``none`` | ``starttls`` | ``tls``
    security: str = "none"
    username: str = ""
    password: Secret = Secret("")
    sender: str = "callsec@localhost"
    timeout_seconds: float = 3.0
    retries: int = 1
    #: Total time a caller may wait for delivery, retries included.
    budget_seconds: float = 5.0
    #: CA bundle (PEM) trusted for ``starttls`` / ``tls``; empty: the system's.
    ca_file: Path | None = None


@dataclass(frozen=True, kw_only=True)
class VerificationSettings:
    company_name: str = "CallSec Demo"
    default_policy: str = "default"
    code_digits: int = 6
    code_ttl_seconds: int = 600
    max_checks: int = 5
    max_sends: int = 5
    lockout_failures: int = 3
    lockout_window_seconds: int = 3600
    lockout_seconds: int = 900
    #: Wrong code checks of one customer (any call, any ending, any door) within
    #: ``lockout_window_seconds`` that lock them for ``lockout_seconds``.
    lockout_wrong_codes: int = 10
    caller_rate_limit_per_hour: int = 20
    #: Code sends (first sends and resends) per customer / per presented number per hour.
    customer_code_sends_per_hour: int = 10
    caller_code_sends_per_hour: int = 10
    #: Code checks (right or wrong, one-time and authenticator codes) per customer / per
    #: presented number per hour.
    customer_code_checks_per_hour: int = 20
    caller_code_checks_per_hour: int = 20
    customer_number_tries: int = 3
    first_digit_timeout_seconds: float = 10.0
    inter_digit_timeout_seconds: float = 5.0
    default_region: str = "DE"
    default_language: str = "en"
    #: Time zone of the call time printed in code messages (IANA name).
    timezone: str = "Europe/Berlin"
    #: Optional overrides of the built-in texts; placeholders ``{company}``, ``{code}``,
    #: ``{time}``, ``{zone}``, ``{ref}``, ``{warning}`` (the warning is appended to an SMS
    #: template that omits it; subjects must not contain ``{code}``).
    sms_template_en: str = ""
    sms_template_de: str = ""
    email_subject_en: str = ""
    email_subject_de: str = ""


@dataclass(frozen=True, kw_only=True)
class ApprovalSettings:
    """Payment approvals (``callsec_ari/approval``): a code bound to amount and payee."""

    #: ISO 4217 codes an approval may name.
    currencies: tuple[str, ...] = ("EUR", "USD", "GBP", "CHF")
    code_digits: int = 6
    #: Seconds a code is good for from its send; a later code is refused (``expired``).
    code_ttl_seconds: int = 300
    #: Codes the caller may type per approval before it fails.
    max_attempts: int = 3
    #: Seconds the caller has for the whole entry.
    entry_timeout_seconds: float = 180.0
    #: Optional overrides of the built-in texts; placeholders ``{company}``, ``{code}``,
    #: ``{amount}``, ``{currency}``, ``{payee}``, ``{time}``, ``{zone}``, ``{ref}``,
    #: ``{warning}`` (SMS templates must hold ``{code}``, ``{amount}`` and ``{payee}``).
    sms_template_en: str = ""
    sms_template_de: str = ""
    email_subject_en: str = ""
    email_subject_de: str = ""


@dataclass(frozen=True, kw_only=True)
class PolicySettings:
    #: ``always`` (a code every time) | ``risk`` (only when caller ID or attestation is weak)
    #: | ``never`` (skip; the result is ``skipped``)
    require_code: str = "always"
    #: Connect callers whose verification failed (``connect`` calls only).
    connect_unverified: bool = False
    #: STIR/SHAKEN attestation levels trusted for ``risk`` (e.g. ``A``).
    trusted_attestation: tuple[str, ...] = ("A",)
    #: Allowed methods, in order of preference when the customer has none.
    methods: tuple[str, ...] = ("sms", "email", "totp")


@dataclass(frozen=True, kw_only=True)
class CaptureSettings:
    #: ``bridge`` (caller alone in a capture bridge) | ``talk_through``
    mode: str = "bridge"
    #: ``vault`` | ``gateway`` | ``sealed`` (each value encrypted to the merchant's public key)
    sink: str = "vault"
    #: ``sink = sealed``: the merchant's X.509 certificate or public key (PEM or DER; X25519,
    #: P-256 or RSA >= 2048 bits). callsec never holds the private key.
    sealed_public_key: Path | None = None
    gateway_url: str = ""
    gateway_hmac_key: Secret = Secret("")
    #: Mutual TLS towards the gateway: client certificate and key (PEM); CA bundle to trust
    #: (empty: the system's). One request per capture, no retries (a payment is not replayed).
    gateway_cert_file: Path | None = None
    gateway_key_file: Path | None = None
    gateway_ca_file: Path | None = None
    gateway_timeout_seconds: float = 10.0
    card_brands: tuple[str, ...] = (
        "visa", "mastercard", "amex", "discover", "diners", "jcb", "maestro", "unionpay",
    )
    iban_country: str = "DE"
    national_id_kind: str = "de_steuer_id"
    #: Postal code format: ``de`` (PLZ, 5 digits) | ``us`` (ZIP, 5 digits, or ZIP+4 keyed as
    #: 9) | ``at`` / ``ch`` (4) | ``fr`` / ``es`` / ``it`` (5).
    postal_code_format: str = "de"
    #: US bank account numbers: how many digits a caller may key.
    account_number_min_digits: int = 4
    account_number_max_digits: int = 17
    max_attempts: int = 3
    confirm_twice: bool = False
    first_digit_timeout_seconds: float = 15.0
    inter_digit_timeout_seconds: float = 6.0
    slow_entry_factor: float = 2.0
    capture_timeout_seconds: float = 180.0
    feature_card: str = "*1"
    feature_bank: str = "*2"
    feature_id: str = "*3"
    #: US bank account (routing number, account number); empty: no feature code.
    feature_bank_us: str = "*4"
    agent_hold_class: str = "default"
    #: ``hangup`` | ``continue`` (back to the dialplan) when the agent leaves mid-capture.
    on_agent_hangup: str = "continue"
    #: talk_through: when the media path cannot be set up, ``cancel`` the capture (reason
    #: ``media_failed``) or go on as a ``bridge`` capture.
    talk_through_fallback: str = "cancel"
    #: talk_through: what replaces a 20 ms frame holding key-tone energy: ``silence`` | ``tone``.
    talk_through_replacement: str = "silence"
    #: talk_through: how long a caller frame waits for its successor (the look-ahead) before it
    #: leaves judged alone (any sign of a tone in it: flattened), in ms.
    talk_through_lookahead_ms: float = 25.0
    #: talk_through: the address callsec's relay binds and Asterisk streams to.
    media_host: str = "127.0.0.1"
    #: talk_through: the address Asterisk sends RTP from (empty: ``media_host``).
    media_peer_host: str = ""
    #: talk_through: ``process`` (default: the relays run in a dedicated media worker process, so
    #: a stalled main loop cannot delay a frame; with ``media_realtime_priority`` the worst frame
    #: hold of 100 captures fell from 1.8 s to 38 ms, README "Talk-through") | ``inline`` (on
    #: callsec's own event loop).
    media_worker: str = "process"
    #: talk_through: the media worker's nice value (0: inherited; root may set it negative).
    media_nice: int = 0
    #: talk_through, ``media_worker = process``: 1-99 runs the worker under SCHED_RR at this
    #: priority (CAP_SYS_NICE or RLIMIT_RTPRIO), so Asterisk's many busy threads cannot keep a frame
    #: waiting for a CPU; 0 (default): normal scheduling.
    media_realtime_priority: int = 0


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    session_ttl_seconds: int = 28800
    secure_cookies: bool = False
    max_body_bytes: int = 65536
    #: Failed logins of one account before each further attempt waits for a delay that
    #: starts at ``login_delay_seconds`` and doubles per failure, capped at
    #: ``login_lockout_seconds``; one address may fail 4x ``login_max_failures`` times per
    #: ``login_lockout_seconds``. Failures never end sessions or lock an account for good.
    login_max_failures: int = 5
    login_lockout_seconds: int = 900
    login_delay_seconds: int = 2
    #: Reverse proxies (addresses or CIDRs) whose ``X-Forwarded-For`` names the client.
    trusted_proxies: tuple[str, ...] = ()
    #: A staff session unused for longer ends (PCI DSS 8.2.8).
    session_idle_minutes: float = 15.0
    #: Vault kinds a supervisor may reveal (with a fresh TOTP code and a reason); add
    #: ``card_number`` only if card numbers are vaulted and policy allows it. Never ``cvv``.
    reveal_kinds: tuple[str, ...] = ("iban", "national_id")
    #: Optional bearer token for Prometheus scrapers on ``/metrics`` (empty: staff only).
    metrics_token: Secret = Secret("")
    #: The address customers and SMS providers reach callsec's web server at (``https://...``;
    #: ``http://`` for a loopback host only): the base of one-time confirmation links and of
    #: the inbound SMS webhook URL Twilio signs. Required when a policy lists ``link``.
    public_url: str = ""


@dataclass(frozen=True, kw_only=True)
class RetentionSettings:
    verifications_days: int = 90
    captures_days: int = 90
    audit_days: int = 3650
    unknown_callers_days: int = 30


@dataclass(frozen=True, kw_only=True)
class LoggingSettings:
    level: str = "INFO"
    #: Empty: stderr (under systemd: the journal, without a second time stamp). A file is
    #: reopened when logrotate moves it and on SIGHUP.
    file: Path | None = None
    #: ``text`` or ``json`` (one object per line: time, level, logger, call_id, message).
    format: str = "text"
    #: ``callsec run`` logs the audit head (``audit head SEQ:HASH at TIME``) at start and every
    #: this many minutes (0: only at start), for ``callsec audit verify --expect``.
    audit_head_minutes: float = 60.0


@dataclass(frozen=True, kw_only=True)
class StatusSettings:
    #: ``callsec run`` answers ``callsec status`` on this unix socket (mode 0600: the user
    #: callsec runs as, and root). Empty: no socket.
    socket: Path | None = Path("var/callsec.ctl")
    #: How many of the last warning and error log lines ``callsec status`` shows (masked).
    last_errors: int = 20


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    """Several callsec nodes on one PostgreSQL: heartbeats, call registry, forwarding."""

    #: Unique per node; empty: the host name (:meth:`node`).
    node_id: str = ""
    #: How the other nodes reach this node's HTTP API (forwarded commands).
    advertise_url: str = "http://127.0.0.1:8080"
    heartbeat_seconds: float = 1.0
    #: A node whose last heartbeat is older than this is dead (its calls are adopted).
    dead_after_seconds: float = 5.0
    #: The key shared by the nodes for node-to-node requests (HMAC), >= 16 characters
    #: (better: ``secret_file``). Empty: commands are not forwarded to other nodes.
    secret: Secret = Secret("")

    def node(self) -> str:
        return self.node_id or socket.gethostname()


@dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    """Signed webhooks: masked call events POSTed to each URL (empty: none)."""

    urls: tuple[str, ...] = ()
    #: HMAC-SHA256 key shared by every URL (better: ``secret_file``), >= 16 characters.
    secret: Secret = Secret("")
    #: One key per URL instead, comma-separated in the order of ``urls`` (or ``secrets_file``,
    #: one a line).
    secrets: Secret = Secret("")
    #: Per attempt; a slower receiver counts as failed and is tried again.
    timeout_seconds: float = 5.0
    #: Tries per event (first included) and the time they may take in all; then dead letter.
    max_attempts: int = 8
    max_seconds: float = 300.0
    #: First pause between tries; doubles each time, jittered (half to all of it).
    backoff_seconds: float = 1.0
    #: The longest pause between two tries (before jitter).
    max_backoff_seconds: float = 60.0
    #: Events waiting per URL; a full queue makes the event a dead letter at once.
    queue_size: int = 1000


@dataclass(frozen=True, kw_only=True)
class PromptsSettings:
    """``[prompts]``; the replacements themselves are ``[prompts:<lang>]`` sections
    (``Settings.prompt_overrides``)."""

    #: The Asterisk sounds dir as callsec sees it (e.g. ``/usr/share/asterisk/sounds``).
    #: Set: languages are found in ``<dir>/<lang>/callsec/`` and a prompt a language lacks plays
    #: in English (logged). Empty: prompts are left to Asterisk's own lookup.
    sounds_dir: Path | None = None
