"""The array dtypes the wire carries, by stable name; always little-endian."""

from __future__ import annotations

from typing import Final

import ml_dtypes
import numpy as np

# Wire names are published API: append, never rename. Byte order on the wire is little-endian.
DTYPES: Final[dict[str, np.dtype[np.generic]]] = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}

FLOAT_DTYPE_NAMES: Final = frozenset({"float64", "float32", "float16", "bfloat16"})
# Section 3.5.2 KV tensors: the three dtypes models actually cache in.
KV_DTYPE_NAMES: Final = frozenset({"float32", "float16", "bfloat16"})


def dtype_name(dtype: np.dtype[np.generic]) -> str | None:
    """The wire name of `dtype`, or None when the wire cannot carry it (e.g. big-endian, object).

    Compares both equality and scalar type, because every ml_dtypes type reports the same `V2`-like
    string and only the scalar type tells bfloat16 apart.
    """
    for name, candidate in DTYPES.items():
        if dtype == candidate and dtype.type is candidate.type:
            return name
    return None


__all__ = ["DTYPES", "FLOAT_DTYPE_NAMES", "KV_DTYPE_NAMES", "dtype_name"]
