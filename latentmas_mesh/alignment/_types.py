"""Array and method type aliases shared by the alignment modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
AnyFloat = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]
Allocator: TypeAlias = Callable[[tuple[int, ...], np.dtype[Any]], npt.NDArray[Any]]
"""Where a result is written: (shape, dtype) -> an uninitialised C-contiguous array."""

Method = Literal["orthogonal", "learned", "hybrid"]
METHODS: Final[tuple[Method, ...]] = ("orthogonal", "learned", "hybrid")
