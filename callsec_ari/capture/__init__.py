"""Secure DTMF capture: field rules, masking and the digit holder (pure building blocks)."""

from callsec_ari.capture.fields import (
    BRAND_LENGTHS,
    IBAN_DIGITS,
    IIN_DIGITS,
    CardBrand,
    FieldKind,
    FieldSpec,
    Reason,
    Validation,
    ValidationContext,
    build_iban,
    card_brand,
    iban_check_digits,
    luhn_ok,
    parse_fields,
    spec_for,
    validate,
)
from callsec_ari.capture.masking import (
    MaskedProgress,
    MaskedResult,
    SensitiveDigits,
    mask_progress,
    mask_result,
)
from callsec_ari.capture.national_ids import NATIONAL_ID_VALIDATORS, NationalIdValidator

__all__ = [
    "BRAND_LENGTHS",
    "IBAN_DIGITS",
    "IIN_DIGITS",
    "NATIONAL_ID_VALIDATORS",
    "CardBrand",
    "FieldKind",
    "FieldSpec",
    "MaskedProgress",
    "MaskedResult",
    "NationalIdValidator",
    "Reason",
    "SensitiveDigits",
    "Validation",
    "ValidationContext",
    "build_iban",
    "card_brand",
    "iban_check_digits",
    "luhn_ok",
    "mask_progress",
    "mask_result",
    "parse_fields",
    "spec_for",
    "validate",
]
