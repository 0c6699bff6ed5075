"""Errors of the approval slice (each with an ``error_id``; never a value in the message)."""

from __future__ import annotations

from callsec_ari.core.errors import CallsecError, Conflict, ErrorId, InvalidInput, NotFound


class ApprovalNotFound(NotFound):
    error_id = ErrorId.APPROVAL_NOT_FOUND


class ApprovalNotPossible(Conflict):
    """The call cannot take an approval now (not connected, a capture running, no verified
    customer, the customer locked out or over a send limit)."""

    error_id = ErrorId.APPROVAL_NOT_POSSIBLE


class ApprovalTermsInvalid(InvalidInput):
    error_id = ErrorId.APPROVAL_TERMS_INVALID


class ApprovalDeliveryFailed(CallsecError):
    error_id = ErrorId.APPROVAL_DELIVERY_FAILED
    status = 502
