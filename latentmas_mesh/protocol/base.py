"""The base of every wire message, the envelope, and the registry that names message types."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Final, Literal, TypeVar

import numpy as np
from pydantic import (
    AliasGenerator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Strict,
    StringConstraints,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from latentmas_mesh import PROTOCOL_VERSION, PROTOCOL_VERSION_V1
from latentmas_mesh.errors import InvalidRequest

MODEL_NAME_CHARS_MAX: Final = 128
TYPE_NAME_CHARS_MAX: Final = 64
VALIDATION_ERRORS_MAX: Final = 20  # errors listed in an InvalidRequest's details
LOCATION_PART_CHARS_MAX: Final = 64  # a peer's unknown key is echoed back at most this long

# Wire scalars are strict: a peer's numeric string, bool or float never becomes an int, a bool
# never becomes a number and bytes never become text (issue 4: wrong types are refused, not
# coerced). A float field still takes an int, because JSON writes 32768.0 as 32768.
WireInt = Annotated[int, Strict()]
WireFloat = Annotated[float, Strict()]
WireStr = Annotated[str, Strict()]
# A model identifier such as "llama-3-70b"; the registry resolves names and aliases, not the schema.
ModelName = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=MODEL_NAME_CHARS_MAX)
]


def _iso_datetime(value: object) -> object:
    """Datetimes travel as ISO 8601 text (JSON bodies and msgpack headers alike).

    Pydantic alone would also read an int, a float or a string of digits as a Unix timestamp;
    on the wire those are wrong types. Awareness (a UTC offset) is checked by AwareDatetime.
    """
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):
        msg = f"expected an ISO 8601 datetime string, got {type(value).__name__}"
        raise ValueError(msg)  # a TypeError would escape pydantic; ValueError is reported
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        msg = "expected an ISO 8601 datetime string such as 2026-01-25T12:30:05Z"
        raise ValueError(msg) from None


WireDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_datetime)]


class WireModel(BaseModel):
    """Base of every wire message: immutable, no unknown fields, snake_case out, camelCase in.

    Field names are snake_case on the wire (Appendix C). The camelCase names of sections 3.5.2 and
    4.3.3 (`sourceModel`, `unifiedDimension`, ...) are accepted when validating, never emitted.
    Equality compares arrays by dtype, shape and value, so round trips can be checked with `==`.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=AliasGenerator(validation_alias=to_camel),
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=False,
        allow_inf_nan=False,
        strict=False,
    )

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        assert isinstance(other, BaseModel)
        return _deep_equal(self.__dict__, other.__dict__)

    __hash__ = None  # type: ignore[assignment]  # arrays are unhashable; messages are compared, not hashed


def _deep_equal(left: object, right: object) -> bool:
    """Structural equality that treats numpy arrays as values (dtype, shape and elements)."""
    if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        if not (isinstance(left, np.ndarray) and isinstance(right, np.ndarray)):
            return False
        return (
            left.dtype == right.dtype
            and left.dtype.type is right.dtype.type
            and left.shape == right.shape
            and bool(np.array_equal(left, right))
        )
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(_deep_equal(left[k], right[k]) for k in left)
    if isinstance(left, Sequence) and isinstance(right, Sequence) and not isinstance(left, str):
        return len(left) == len(right) and all(
            _deep_equal(a, b) for a, b in zip(left, right, strict=True)
        )
    return bool(left == right)


class EnvelopeV2(WireModel):
    """A request of LatentMAS/2.0: carries `"protocol": "LatentMAS/2.0"` (Appendix C.1)."""

    protocol: Literal["LatentMAS/2.0"] = "LatentMAS/2.0"


class EnvelopeV1(WireModel):
    """A request of LatentMAS/1.0, kept working by the migration guide ("All v1.0 APIs remain")."""

    protocol: Literal["LatentMAS/1.0"] = "LatentMAS/1.0"


assert PROTOCOL_VERSION == "LatentMAS/2.0"
assert PROTOCOL_VERSION_V1 == "LatentMAS/1.0"

# Stable type name -> model class. The codec writes the name in every header and looks it up here.
MESSAGE_TYPES: dict[str, type[WireModel]] = {}
_TYPE_NAMES: dict[type[WireModel], str] = {}

M = TypeVar("M", bound=type[WireModel])


def register_message(type_name: str) -> Callable[[M], M]:
    """Class decorator: make a `WireModel` encodable and decodable under `type_name`.

    The name is published API (it travels in every header): choose it once, lower snake case,
    namespaced by area for new areas (e.g. "ledger.reserve_request"), and never reuse it.
    """
    if not (0 < len(type_name) <= TYPE_NAME_CHARS_MAX) or not type_name.isascii():
        msg = f"message type name must be 1..{TYPE_NAME_CHARS_MAX} ASCII characters: {type_name!r}"
        raise ValueError(msg)

    def decorate(cls: M) -> M:
        if not issubclass(cls, WireModel):
            msg = f"{cls.__name__} must subclass WireModel to be a message"
            raise TypeError(msg)
        existing = MESSAGE_TYPES.get(type_name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            msg = f"message type {type_name!r} is already {existing.__qualname__}"
            raise ValueError(msg)
        MESSAGE_TYPES[type_name] = cls
        _TYPE_NAMES[cls] = type_name
        return cls

    return decorate


def type_name_of(message: WireModel | type[WireModel]) -> str:
    """The registered type name of a message or message class; TypeError for an unregistered one."""
    cls = message if isinstance(message, type) else type(message)
    try:
        return _TYPE_NAMES[cls]
    except KeyError:
        msg = f"{cls.__qualname__} is not a registered message type (use @register_message)"
        raise TypeError(msg) from None


W = TypeVar("W", bound=WireModel)


def validate_message(cls: type[W], data: object, *, context: dict[str, Any] | None = None) -> W:
    """Validate `data` as `cls`; a schema violation becomes InvalidRequest with a summary."""
    try:
        return cls.model_validate(data, context=context)
    except ValidationError as exc:
        details = validation_error_details(exc)
        first = details["errors"][0] if details["errors"] else {"loc": [], "msg": "invalid"}
        where = ".".join(str(part) for part in first["loc"]) or cls.__name__
        msg = f"{cls.__name__} does not match its schema: {where}: {first['msg']}"
        raise InvalidRequest(msg, details=details) from exc


def validation_error_details(exc: ValidationError) -> dict[str, Any]:
    """A JSON-safe, bounded summary of a ValidationError: never echoes the peer's input values."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return {
        "model": exc.title,
        "error_count": exc.error_count(),
        "errors": [
            {
                "loc": [
                    part if isinstance(part, int) else str(part)[:LOCATION_PART_CHARS_MAX]
                    for part in error["loc"]
                ],
                "type": error["type"],
                "msg": error["msg"][:256],
            }
            for error in errors[:VALIDATION_ERRORS_MAX]
        ],
    }


__all__ = [
    "MESSAGE_TYPES",
    "MODEL_NAME_CHARS_MAX",
    "EnvelopeV1",
    "EnvelopeV2",
    "ModelName",
    "WireDatetime",
    "WireFloat",
    "WireInt",
    "WireModel",
    "WireStr",
    "register_message",
    "type_name_of",
    "validate_message",
    "validation_error_details",
]
