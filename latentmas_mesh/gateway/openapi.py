"""The gateway's OpenAPI document: request and response schemas from the protocol's own
models (snake_case, as Appendix C writes them), and every error a path can answer."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel

from latentmas_mesh.gateway.frames import MEDIA_TYPE
from latentmas_mesh.gateway.status import HTTP_STATUS, UNAUTHENTICATED
from latentmas_mesh.protocol import ErrorBody

REF: Final = "#/components/schemas/{model}"
BINARY_SCHEMA: Final = {
    "type": "string",
    "format": "binary",
    "description": (
        "The codec's frames (msgpack header, then one raw frame per array), each preceded by "
        "its length as an unsigned 64-bit little-endian integer"
    ),
}
ERROR_TEXT: Final = {
    400: "Invalid request (INVALID_REQUEST)",
    401: "No or unknown bearer token (UNAUTHORIZED)",
    402: "Insufficient funds (INSUFFICIENT_FUNDS)",
    403: "Authenticated but not allowed (UNAUTHORIZED)",
    404: "Unknown model, map, job or path",
    409: "Conflict: an id reused with other content, or a closed reservation",
    413: "Body or message too large (PAYLOAD_TOO_LARGE)",
    422: "DIMENSION_MISMATCH or QUALITY_BELOW_THRESHOLD",
    429: "A quota of the caller's own store is full (QUOTA_EXCEEDED)",
    503: "No worker can take it now, or the mesh failed (SERVICE_UNAVAILABLE, INTERNAL)",
    504: "No answer within the deadline (TIMEOUT): retry with the same Idempotency-Key",
}
COMMON_ERRORS: Final = (400, 503, 504)


class Schemas:
    """The component schemas the paths refer to, collected as the routes are declared."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, cls: type[BaseModel], *, mode: str = "serialization") -> dict[str, str]:
        """A `$ref` to `cls`'s schema (its nested models become components too)."""
        schema = cls.model_json_schema(by_alias=False, ref_template=REF, mode=mode)  # type: ignore[arg-type]
        self.components.update(schema.pop("$defs", {}))
        self.components[cls.__name__] = schema
        return {"$ref": REF.format(model=cls.__name__)}

    def body(self, cls: type[BaseModel], *, binary: bool) -> dict[str, Any]:
        """`openapi_extra` for a route that reads its body itself (to bound it while reading)."""
        content: dict[str, Any] = {"application/json": {"schema": self.ref(cls, mode="validation")}}
        if binary:
            content[MEDIA_TYPE] = {"schema": BINARY_SCHEMA}
        return {"requestBody": {"required": True, "content": content}}

    def responses(
        self,
        ok: type[BaseModel] | None,
        *statuses: int,
        binary: bool = False,
        authenticated: bool = True,
        ok_status: int = 200,
    ) -> dict[int | str, Any]:
        """The route's answers: `ok` (in JSON, and binary when `binary`), and every error
        status it can give, each with the one error body."""
        answers: dict[int | str, Any] = {}
        if ok is not None:
            content: dict[str, Any] = {"application/json": {"schema": self.ref(ok)}}
            if binary:
                content[MEDIA_TYPE] = {"schema": BINARY_SCHEMA}
            answers[ok_status] = {"description": ok.__doc__ or ok.__name__, "content": content}
        error = {"application/json": {"schema": self.ref(ErrorBody)}}
        codes = {*COMMON_ERRORS, *statuses}
        if authenticated:
            codes |= {UNAUTHENTICATED, 403}
        for status in sorted(codes):
            answers[status] = {"description": ERROR_TEXT[status], "content": error}
        return answers


assert set(ERROR_TEXT) >= {*HTTP_STATUS.values(), UNAUTHENTICATED}  # every status described

__all__ = ["BINARY_SCHEMA", "Schemas"]
