"""The one wire shape of an error, plus the typed exceptions it maps to (re-exported)."""

from __future__ import annotations

from typing import Any, Final

from pydantic import Field

from latentmas_mesh.errors import (
    ERROR_CLASSES,
    RESOLUTIONS,
    ErrorCode,
    ProtocolError,
    error_from_wire,
)
from latentmas_mesh.protocol.base import WireModel, WireStr, register_message

ERROR_MESSAGE_CHARS_MAX: Final = 4096


@register_message("error")
class ErrorBody(WireModel):
    """Every error reply: the shape of `ProtocolError.to_wire()` (Appendix C.2 plus our codes)."""

    code: ErrorCode
    message: WireStr = Field(max_length=ERROR_MESSAGE_CHARS_MAX)
    resolution: WireStr = Field(max_length=ERROR_MESSAGE_CHARS_MAX)
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_error(cls, exc: ProtocolError) -> ErrorBody:
        """The reply for a raised ProtocolError; an over-long message is cut, never refused."""
        wire = exc.to_wire()
        wire["message"] = wire["message"][:ERROR_MESSAGE_CHARS_MAX]
        return cls.model_validate(wire)

    def to_exception(self) -> ProtocolError:
        """The typed exception this body stands for, ready to raise on the receiving side."""
        return error_from_wire(self.model_dump(mode="json"))


__all__ = [
    "ERROR_CLASSES",
    "RESOLUTIONS",
    "ErrorBody",
    "ErrorCode",
    "ProtocolError",
]
