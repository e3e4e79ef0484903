"""The JSON/HTTP edge: the spec's nested number lists in, numpy arrays inside, nested lists out."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, Final, TypeVar

import numpy as np
import pydantic_core

from latentmas_mesh.errors import InvalidRequest, PayloadTooLarge
from latentmas_mesh.protocol.base import WireModel, validate_message
from latentmas_mesh.protocol.dtypes import DTYPES, FLOAT_DTYPE_NAMES

MIB: Final = 1 << 20
JSON_BYTES_MAX: Final = 256 * MIB  # default bound on one JSON document at the edge
JSON_ELEMENTS_MAX: Final = 64 * MIB  # numbers in one array built from JSON lists
JSON_DEPTH_MAX: Final = 8  # list nesting of one array

# Nested lists become arrays only when validation runs with this context key set: the binary
# path (codec) accepts nothing but numpy arrays.
_CONTEXT_KEY: Final = "latentmas.json_edge"
_FLOAT_DTYPE_KEY: Final = "latentmas.json_float_dtype"

M = TypeVar("M", bound=WireModel)


def json_edge_context(float_dtype: str = "float32") -> dict[str, Any]:
    """The validation context that lets nested lists in; floats become `float_dtype` arrays."""
    if float_dtype not in FLOAT_DTYPE_NAMES:
        msg = f"float_dtype must be one of {sorted(FLOAT_DTYPE_NAMES)}, not {float_dtype!r}"
        raise ValueError(msg)
    return {_CONTEXT_KEY: True, _FLOAT_DTYPE_KEY: float_dtype}


def is_json_edge(context: object) -> bool:
    """True when validation runs at the JSON edge (see `json_edge_context`)."""
    return isinstance(context, Mapping) and context.get(_CONTEXT_KEY) is True


def json_float_dtype(context: object) -> str:
    """The float dtype name JSON numbers become under `context` (float32 unless set)."""
    if isinstance(context, Mapping):
        name = context.get(_FLOAT_DTYPE_KEY, "float32")
        if isinstance(name, str) and name in FLOAT_DTYPE_NAMES:
            return name
    return "float32"


def parse_json(
    cls: type[M],
    raw: bytes | bytearray | str,
    *,
    json_bytes_max: int = JSON_BYTES_MAX,
    float_dtype: str = "float32",
) -> M:
    """Parse one JSON document as message `cls`; raises InvalidRequest or PayloadTooLarge only.

    NaN, Infinity and numbers that overflow `float_dtype` are refused, as on the binary path.
    """
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > json_bytes_max:
        msg = f"JSON body is {size} bytes; this edge accepts at most {json_bytes_max}"
        raise PayloadTooLarge(msg, details={"bytes": size, "json_bytes_max": json_bytes_max})
    try:
        data = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise InvalidRequest(f"body is not valid JSON: {str(exc)[:200]}") from exc
    return from_jsonable(cls, data, float_dtype=float_dtype)


def from_jsonable(cls: type[M], data: object, *, float_dtype: str = "float32") -> M:
    """Validate already-parsed JSON (dicts, lists, numbers) as `cls`; InvalidRequest on mismatch."""
    return validate_message(cls, data, context=json_edge_context(float_dtype))


def to_jsonable(message: WireModel) -> dict[str, Any]:
    """The message as JSON-ready data: snake_case names, arrays as the spec's nested lists."""
    return message.model_dump(mode="json")


def dump_json(message: WireModel) -> bytes:
    """The message as one UTF-8 JSON document (see `to_jsonable`)."""
    return message.model_dump_json().encode()


def nested_to_array(
    obj: object,
    *,
    ndims: Collection[int],
    dtype_name: str,
    what: str = "array",
    integer_dtype_name: str | None = None,
) -> np.ndarray[Any, np.dtype[Any]]:
    """Convert rectangular nested lists of numbers to an array of wire dtype `dtype_name`.

    With `integer_dtype_name`, lists whose numbers are all JSON integers become that dtype
    instead (JSON tells 1 from 1.0, so a float mask or position list keeps its floats).
    Raises ValueError (pydantic turns it into a located validation error) for a depth not in
    `ndims`, ragged lists, anything but int/float leaves (bool and numeric strings included),
    more than JSON_ELEMENTS_MAX numbers, and values that are not finite in the target dtype.
    """
    shape = _leading_shape(obj)
    if len(shape) not in ndims:
        msg = f"{what} must be nested lists of depth {sorted(ndims)}, got depth {len(shape)}"
        raise ValueError(msg)
    count = math.prod(shape)
    if count > JSON_ELEMENTS_MAX:
        msg = f"{what} has {count} numbers; the JSON edge accepts at most {JSON_ELEMENTS_MAX}"
        raise ValueError(msg)
    only_integers = _check_rectangular(obj, shape, 0, what)
    if integer_dtype_name is not None and only_integers:
        dtype_name = integer_dtype_name
    dtype = DTYPES[dtype_name]
    floats = dtype_name in FLOAT_DTYPE_NAMES
    try:
        wide = _widest(obj, shape, floats=floats)
        with np.errstate(over="ignore", invalid="ignore"):
            array = wide.astype(dtype)
    except (OverflowError, TypeError, ValueError) as exc:
        msg = f"{what} holds numbers that do not fit {dtype_name}"
        raise ValueError(msg) from exc
    if floats and not bool(np.isfinite(array).all()):
        msg = f"{what} holds numbers that are not finite in {dtype_name}"
        raise ValueError(msg)
    if not floats and not np.array_equal(array.astype(np.int64), wide):
        msg = f"{what} holds numbers that do not fit {dtype_name}"
        raise ValueError(msg)
    return array


def array_to_nested(array: np.ndarray[Any, np.dtype[Any]], *, merge_trailing: int = 1) -> Any:  # noqa: ANN401  # nested lists of any depth
    """Nested lists of Python numbers for JSON; the last `merge_trailing` axes become one axis.

    KV tensors use merge_trailing=2: [layers, heads, seq, head_dim] -> [layers][heads][seq × dim],
    the layout section 3.5.2 writes. Bools become 0 and 1: the spec's masks are number[][], and
    the edge reads JSON true/false as wrong types.
    """
    if merge_trailing > 1 and array.ndim >= merge_trailing:
        keep = array.shape[: array.ndim - merge_trailing]
        array = array.reshape((*keep, -1)) if array.size else array.reshape((*keep, 0))
    if array.dtype.kind in "iu":
        return array.tolist()
    if array.dtype.kind == "b":
        return array.astype(np.int64).tolist()
    return array.astype(np.float64).tolist()


def _widest(obj: object, shape: list[int], *, floats: bool) -> np.ndarray[Any, np.dtype[Any]]:
    """float64 for float targets; int64 for integer targets, where a float leaf is an error."""
    if floats:
        return np.array(obj, dtype=np.float64)
    if math.prod(shape) == 0:
        return np.zeros(shape, dtype=np.int64)
    wide = np.array(obj)
    if wide.dtype.kind != "i":
        msg = "integers expected"
        raise ValueError(msg)
    return wide.astype(np.int64)


def _leading_shape(obj: object) -> list[int]:
    """The shape implied by the first element at each depth; stops at a leaf or an empty list."""
    shape: list[int] = []
    node = obj
    while isinstance(node, list):
        shape.append(len(node))
        if len(shape) > JSON_DEPTH_MAX:
            msg = f"nested lists deeper than {JSON_DEPTH_MAX}"
            raise ValueError(msg)
        if not node:
            break
        node = node[0]
    return shape


def _check_rectangular(node: object, shape: list[int], depth: int, what: str) -> bool:
    """Every list at `depth` has length shape[depth]; leaves are int or float, never bool.

    Returns True when every leaf is an int.
    """
    if not isinstance(node, list) or len(node) != shape[depth]:
        msg = f"{what} is ragged or mixes lists and numbers at depth {depth}"
        raise ValueError(msg)
    if depth == len(shape) - 1:
        only_integers = True
        for leaf in node:
            if type(leaf) is float:
                only_integers = False
            elif type(leaf) is not int:
                msg = f"{what} holds a {type(leaf).__name__} where a number belongs"
                raise ValueError(msg)
        return only_integers
    results = [_check_rectangular(child, shape, depth + 1, what) for child in node]
    return all(results)


__all__ = [
    "JSON_BYTES_MAX",
    "JSON_ELEMENTS_MAX",
    "array_to_nested",
    "dump_json",
    "from_jsonable",
    "is_json_edge",
    "json_edge_context",
    "json_float_dtype",
    "nested_to_array",
    "parse_json",
    "to_jsonable",
]
