"""Array and method type aliases shared by the alignment modules."""

from __future__ import annotations

from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
AnyFloat = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]

Method = Literal["orthogonal", "learned", "hybrid"]
METHODS: Final[tuple[Method, ...]] = ("orthogonal", "learned", "hybrid")
