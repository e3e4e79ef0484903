"""Typed protocol errors: one stable code per failure, one exception class per code, one wire shape.

Codes are published API. A code never changes meaning once released; new codes are appended.
The first four are the spec's (Appendix C.2) with its resolution text; the rest are the ones a
real service needs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    """Every error code a client can receive. Append only; never rename or reuse."""

    # Appendix C.2
    W_MATRIX_NOT_FOUND = "W_MATRIX_NOT_FOUND"
    DIMENSION_MISMATCH = "DIMENSION_MISMATCH"
    QUALITY_BELOW_THRESHOLD = "QUALITY_BELOW_THRESHOLD"
    MODEL_NOT_SUPPORTED = "MODEL_NOT_SUPPORTED"
    # What a real service needs beside them
    INVALID_REQUEST = "INVALID_REQUEST"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    UNAUTHORIZED = "UNAUTHORIZED"
    CONFLICT = "CONFLICT"
    TIMEOUT = "TIMEOUT"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL = "INTERNAL"
    RESERVATION_NOT_FOUND = "RESERVATION_NOT_FOUND"
    RESERVATION_CLOSED = "RESERVATION_CLOSED"
    NOT_FOUND = "NOT_FOUND"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"


RESOLUTIONS: dict[ErrorCode, str] = {
    ErrorCode.W_MATRIX_NOT_FOUND: "Use fallback method",
    ErrorCode.DIMENSION_MISMATCH: "Regenerate W-Matrix",
    ErrorCode.QUALITY_BELOW_THRESHOLD: "Try different method",
    ErrorCode.MODEL_NOT_SUPPORTED: "Request model addition",
    ErrorCode.INVALID_REQUEST: "Fix the request so that it matches the message schema",
    ErrorCode.PAYLOAD_TOO_LARGE: "Send a smaller payload or raise the receiver's size limit",
    ErrorCode.INSUFFICIENT_FUNDS: "Deposit funds into the paying account and retry",
    ErrorCode.UNAUTHORIZED: "Authenticate with a key or identity that is allowed this action",
    ErrorCode.CONFLICT: "Use a new id: this id was already used with different content",
    ErrorCode.TIMEOUT: "Retry with the same request id; the operation is idempotent",
    ErrorCode.SERVICE_UNAVAILABLE: "Retry later or start more workers for the service",
    ErrorCode.INTERNAL: "Report the request id to the operator; retrying with the same id is safe",
    ErrorCode.RESERVATION_NOT_FOUND: "Reserve first, then pay, post or void with its id",
    ErrorCode.RESERVATION_CLOSED: (
        "The reservation was already posted, voided or expired: make a new reservation to pay"
    ),
    ErrorCode.NOT_FOUND: "Check the path or id: nothing by that name exists here",
    ErrorCode.QUOTA_EXCEEDED: (
        "Forget what is no longer needed, or ask the operator for a larger quota"
    ),
}


class ProtocolError(Exception):
    """Base of every error that crosses a process boundary; carries its code and details.

    Subclasses fix `code`; construct them with a human message and optional JSON-safe details.
    """

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    @property
    def resolution(self) -> str:
        return RESOLUTIONS[self.code]

    def to_wire(self) -> dict[str, Any]:
        """The one wire shape of an error (see `protocol.messages.ErrorBody`)."""
        return {
            "code": self.code.value,
            "message": self.message,
            "resolution": self.resolution,
            "details": self.details,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class WMatrixNotFound(ProtocolError):
    """No W-matrix exists for the model pair or the requested version."""

    code = ErrorCode.W_MATRIX_NOT_FOUND


class DimensionMismatch(ProtocolError):
    """A KV cache or vector's dimensions disagree with the model or map it names."""

    code = ErrorCode.DIMENSION_MISMATCH


class QualityBelowThreshold(ProtocolError):
    """The measured alignment quality is below the caller's threshold."""

    code = ErrorCode.QUALITY_BELOW_THRESHOLD


class ModelNotSupported(ProtocolError):
    """The model is not in the registry, or cannot do what was asked (e.g. export its cache)."""

    code = ErrorCode.MODEL_NOT_SUPPORTED


class InvalidRequest(ProtocolError):
    """The message is malformed: wrong types, missing fields, bad frames, forbidden values."""

    code = ErrorCode.INVALID_REQUEST


class PayloadTooLarge(ProtocolError):
    """The message or one of its arrays exceeds a configured size limit."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class InsufficientFunds(ProtocolError):
    """The paying account's available balance does not cover the amount."""

    code = ErrorCode.INSUFFICIENT_FUNDS


class Unauthorized(ProtocolError):
    """The authenticated identity may not perform this action."""

    code = ErrorCode.UNAUTHORIZED


class Conflict(ProtocolError):
    """An idempotency id was reused with different content."""

    code = ErrorCode.CONFLICT


class Timeout(ProtocolError):
    """No answer arrived within the deadline."""

    code = ErrorCode.TIMEOUT


class ServiceUnavailable(ProtocolError):
    """No worker can take the request now (none registered, or the service queue is full)."""

    code = ErrorCode.SERVICE_UNAVAILABLE


class InternalError(ProtocolError):
    """An unexpected failure inside a service; the request id identifies it in the logs."""

    code = ErrorCode.INTERNAL


class ReservationNotFound(ProtocolError):
    """A payment, post, void or lookup names a reservation the ledger does not hold."""

    code = ErrorCode.RESERVATION_NOT_FOUND


class ReservationClosed(ProtocolError):
    """A payment, post or void names a reservation that is no longer pending."""

    code = ErrorCode.RESERVATION_CLOSED


class NotFound(ProtocolError):
    """The path, job or record asked for does not exist (or is not the caller's to see)."""

    code = ErrorCode.NOT_FOUND


class QuotaExceeded(ProtocolError):
    """The caller's own store (long-term memory, listings) is full: nothing was written."""

    code = ErrorCode.QUOTA_EXCEEDED


ERROR_CLASSES: dict[ErrorCode, type[ProtocolError]] = {
    cls.code: cls
    for cls in (
        WMatrixNotFound,
        DimensionMismatch,
        QualityBelowThreshold,
        ModelNotSupported,
        InvalidRequest,
        PayloadTooLarge,
        InsufficientFunds,
        Unauthorized,
        Conflict,
        Timeout,
        ServiceUnavailable,
        InternalError,
        ReservationNotFound,
        ReservationClosed,
        NotFound,
        QuotaExceeded,
    )
}


def error_from_wire(body: dict[str, Any]) -> ProtocolError:
    """Rebuild the typed exception from its wire shape; an unknown code becomes INTERNAL."""
    try:
        code = ErrorCode(str(body.get("code")))
    except ValueError:
        code = ErrorCode.INTERNAL
    details = body.get("details")
    return ERROR_CLASSES[code](
        str(body.get("message", "")), details=details if isinstance(details, dict) else None
    )
