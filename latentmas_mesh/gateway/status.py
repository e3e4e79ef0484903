"""HTTP statuses of the protocol's error codes, and the one error body every failure gets."""

from __future__ import annotations

from typing import Any, Final

from latentmas_mesh.errors import ErrorCode, ProtocolError
from latentmas_mesh.protocol import ErrorBody

HTTP_STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 403,  # authenticated but not allowed; no or bad credentials: 401
    ErrorCode.INSUFFICIENT_FUNDS: 402,
    ErrorCode.MODEL_NOT_SUPPORTED: 404,
    ErrorCode.W_MATRIX_NOT_FOUND: 404,
    ErrorCode.RESERVATION_NOT_FOUND: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RESERVATION_CLOSED: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.QUOTA_EXCEEDED: 429,
    ErrorCode.DIMENSION_MISMATCH: 422,
    ErrorCode.QUALITY_BELOW_THRESHOLD: 422,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 503,  # the mesh's own failure: retrying with the same id is safe
    ErrorCode.TIMEOUT: 504,
}
"""Every code has one status (tests check the table is total). 503 and 504 are the only 5xx: a
client can retry both with the same request id, and never sees a traceback."""
UNAUTHENTICATED: Final = 401


def status_of(error: ProtocolError, *, authenticated: bool = True) -> int:
    """The status for `error`; UNAUTHORIZED is 401 when the caller proved no identity at all."""
    if error.code is ErrorCode.UNAUTHORIZED and not authenticated:
        return UNAUTHENTICATED
    return HTTP_STATUS[error.code]


def error_body(error: ProtocolError) -> dict[str, Any]:
    """The JSON body of every error: the wire's ErrorBody (code, message, resolution, details)."""
    return ErrorBody.from_error(error).model_dump(mode="json")


__all__ = ["HTTP_STATUS", "UNAUTHENTICATED", "error_body", "status_of"]
