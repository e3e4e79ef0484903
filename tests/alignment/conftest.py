"""Synthetic paired data with known ground truth for the alignment tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass(frozen=True)
class Paired:
    """Rows x [n, d_s] and y [n, d_t] with y = x·matrix + bias (+ noise)."""

    x: np.ndarray
    y: np.ndarray
    matrix: np.ndarray
    bias: np.ndarray


def random_rotation(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A Haar-ish random orthogonal [dim, dim] matrix."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def anisotropic_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    """Rows with a spread of variances and a non-zero mean, like real activations."""
    return rng.standard_normal((rows, dim)) * np.linspace(3.0, 0.5, dim) + rng.normal(size=dim)


@pytest.fixture
def rotated(rng: np.random.Generator) -> Paired:
    """y = 2.5·x·Q + b exactly, Q orthogonal 48x48."""
    x = anisotropic_rows(rng, 600, 48)
    matrix = 2.5 * random_rotation(rng, 48)
    bias = rng.normal(size=48)
    return Paired(x, x @ matrix + bias, matrix, bias)


@pytest.fixture
def linear(rng: np.random.Generator) -> Paired:
    """y = x·M + b + 5% noise with a general M: 40 -> 56 dimensions."""
    x = anisotropic_rows(rng, 1500, 40)
    matrix = rng.standard_normal((40, 56)) / 6.0
    bias = rng.normal(size=56)
    clean = x @ matrix + bias
    noise = 0.05 * clean.std() * rng.standard_normal(clean.shape)
    return Paired(x, clean + noise, matrix, bias)
