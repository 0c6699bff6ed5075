"""Errors of the approval slice (each with an ``error_id``; never a value in the message)."""

from __future__ import annotations

from callsec_ari.core.errors import CallsecError, Conflict, InvalidInput, NotFound


class ApprovalNotFound(NotFound):
    error_id = "approval_not_found"


class ApprovalNotPossible(Conflict):
    """The call cannot take an approval now (not connected, a capture running, no verified
    customer, the customer locked out or over a send limit)."""

    error_id = "approval_not_possible"


class ApprovalTermsInvalid(InvalidInput):
    error_id = "approval_terms_invalid"


class ApprovalDeliveryFailed(CallsecError):
    error_id = "approval_delivery_failed"
    status = 502
