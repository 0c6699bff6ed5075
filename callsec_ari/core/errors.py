"""The error tree. Every error has a machine-readable ``error_id`` and an HTTP status that
the web layer maps to ``{"error_id", "message", "details"}``.

Messages never contain digits a caller typed, codes, keys or phone numbers: callers of these
constructors pass identifiers (call id, customer reference, key names), never values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class CallsecError(Exception):
    error_id: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str = "", *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message or self.error_id)
        self.message = message or self.error_id
        self.details: dict[str, Any] = dict(details or {})

    def to_json(self) -> dict[str, Any]:
        return {"error_id": self.error_id, "message": self.message, "details": self.details}


class ConfigError(CallsecError):
    """A bad configuration value; names the section and the key."""

    error_id = "config_invalid"

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

    error_id = "flow_protocol_error"


class NotFound(CallsecError):
    error_id = "not_found"
    status = 404


class Conflict(CallsecError):
    error_id = "conflict"
    status = 409


class InvalidInput(CallsecError):
    error_id = "invalid_input"
    status = 422


class Unauthorized(CallsecError):
    error_id = "unauthorized"
    status = 401


class Forbidden(CallsecError):
    error_id = "forbidden"
    status = 403


class Unavailable(CallsecError):
    """A backend (Asterisk, database, gateway) cannot be reached."""

    error_id = "unavailable"
    status = 503
