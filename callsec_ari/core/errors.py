"""The error tree. Every error has a machine-readable ``error_id`` and an HTTP status that
the web layer maps to ``{"error_id", "message", "details"}``.

Messages never contain digits a caller typed, codes, keys or phone numbers: callers of these
constructors pass identifiers (call id, customer reference, key names), never values.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar


class ErrorId(StrEnum):
    """Every ``error_id`` callsec answers with (HTTP API, ``CommandFailed``, the audit trail).
    The values are the wire strings of the CONTRACT: never change one."""

    AGI_COMMAND_FAILED = "agi_command_failed"
    AGI_DISCONNECTED = "agi_disconnected"
    AGI_ERROR = "agi_error"
    AGI_HANGUP = "agi_hangup"
    AGI_INVALID_ARGUMENT = "agi_invalid_argument"
    AGI_PROTOCOL_ERROR = "agi_protocol_error"
    AMI_ACTION_FAILED = "ami_action_failed"
    AMI_AUTH_FAILED = "ami_auth_failed"
    AMI_CONFIG_NOT_FOUND = "ami_config_not_found"
    AMI_ERROR = "ami_error"
    AMI_NO_SUCH_CHANNEL = "ami_no_such_channel"
    AMI_PERMISSION_DENIED = "ami_permission_denied"
    AMI_UNREACHABLE = "ami_unreachable"
    APPROVAL_DELIVERY_FAILED = "approval_delivery_failed"
    APPROVAL_NOT_FOUND = "approval_not_found"
    APPROVAL_NOT_POSSIBLE = "approval_not_possible"
    APPROVAL_TERMS_INVALID = "approval_terms_invalid"
    ARI_AUTH_FAILED = "ari_auth_failed"
    ARI_BAD_REQUEST = "ari_bad_request"
    ARI_CONFLICT = "ari_conflict"
    ARI_ERROR = "ari_error"
    ARI_NOT_FOUND = "ari_not_found"
    ARI_PROTOCOL_ERROR = "ari_protocol_error"
    ARI_SERVER_ERROR = "ari_server_error"
    ARI_UNAVAILABLE = "ari_unavailable"
    ARI_UNPROCESSABLE = "ari_unprocessable"
    ASSET_TARGET_INVALID = "asset_target_invalid"
    ASSETS_MISSING = "assets_missing"
    AUDIT_HEAD_MISSING = "audit_head_missing"
    CALL_NOT_CONNECTED = "call_not_connected"
    CAPTURE_NOT_FOUND = "capture_not_found"
    CAPTURE_NOT_REOPENABLE = "capture_not_reopenable"
    CAPTURE_RUNNING = "capture_running"
    CAPTURE_UNAVAILABLE = "capture_unavailable"
    CONFIG_INVALID = "config_invalid"
    CONFLICT = "conflict"
    CSRF_FAILED = "csrf_failed"
    CUSTOMER_ERASED = "customer_erased"
    DATA_KEY_DESTROYED = "data_key_destroyed"
    DATABASE_UNAVAILABLE = "database_unavailable"
    DECRYPTION_FAILED = "decryption_failed"
    DELIVERY_FAILED = "delivery_failed"
    FLOW_PROTOCOL_ERROR = "flow_protocol_error"
    FORBIDDEN = "forbidden"
    GATEWAY_FAILED = "gateway_failed"
    INTERNAL_ERROR = "internal_error"
    INVALID_CREDENTIALS = "invalid_credentials"
    INVALID_INPUT = "invalid_input"
    KEY_RING_MISMATCH = "key_ring_mismatch"
    KEY_UNAVAILABLE = "key_unavailable"
    KEYS_NOT_INITIALISED = "keys_not_initialised"
    LOGIN_DELAYED = "login_delayed"
    MEDIA_RELAY_CLOSED = "media_relay_closed"
    MEDIA_RELAY_OPEN_FAILED = "media_relay_open_failed"
    MEDIA_UNAVAILABLE = "media_unavailable"
    MEDIA_WORKER_LOST = "media_worker_lost"
    MFA_FAILED = "mfa_failed"
    MFA_REQUIRED = "mfa_required"
    NOT_FOUND = "not_found"
    NODE_REQUEST_REFUSED = "node_request_refused"
    NODE_UNAVAILABLE = "node_unavailable"
    RATE_LIMITED = "rate_limited"
    RECORDING_MUTE_FAILED = "recording_mute_failed"
    RTP_MALFORMED = "rtp_malformed"
    SCHEMA_OUTDATED = "schema_outdated"
    SESSION_INVALID = "session_invalid"
    UNAUTHORIZED = "unauthorized"
    UNAVAILABLE = "unavailable"
    VAULT_REFUSED = "vault_refused"


#: A command failed because its channel (or the object it named) no longer exists.
CHANNEL_GONE = frozenset({ErrorId.NOT_FOUND, ErrorId.ARI_NOT_FOUND, ErrorId.CAPTURE_NOT_FOUND,
                          ErrorId.APPROVAL_NOT_FOUND, ErrorId.AMI_CONFIG_NOT_FOUND})


class CallsecError(Exception):
    error_id: ClassVar[str] = ErrorId.INTERNAL_ERROR
    status: ClassVar[int] = 500

    def __init__(self, message: str = "", *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message or self.error_id)
        self.message = message or self.error_id
        self.details: dict[str, Any] = dict(details or {})

    def to_json(self) -> dict[str, Any]:
        return {"error_id": self.error_id, "message": self.message, "details": self.details}


class ConfigError(CallsecError):
    """A bad configuration value; names the section and the key."""

    error_id: ClassVar[str] = ErrorId.CONFIG_INVALID

    def __init__(self, message: str, *, section: str | None = None, key: str | None = None) -> None:
        where = ""
        if section and key:
            where = f"[{section}] {key}: "
        elif section:
            where = f"[{section}]: "
        super().__init__(where + message, details={"section": section, "key": key})
        self.section = section
        self.key = key


class FlowError(CallsecError):
    """An event arrived that the flow's transition table does not allow."""

    error_id: ClassVar[str] = ErrorId.FLOW_PROTOCOL_ERROR


class NotFound(CallsecError):
    error_id: ClassVar[str] = ErrorId.NOT_FOUND
    status = 404


class Conflict(CallsecError):
    error_id: ClassVar[str] = ErrorId.CONFLICT
    status = 409


class InvalidInput(CallsecError):
    error_id: ClassVar[str] = ErrorId.INVALID_INPUT
    status = 422


class Unauthorized(CallsecError):
    error_id: ClassVar[str] = ErrorId.UNAUTHORIZED
    status = 401


class Forbidden(CallsecError):
    error_id: ClassVar[str] = ErrorId.FORBIDDEN
    status = 403


class Unavailable(CallsecError):
    """A backend (Asterisk, database, gateway) cannot be reached."""

    error_id: ClassVar[str] = ErrorId.UNAVAILABLE
    status = 503
