"""Adapter from the model registry (Appendix D) to the alignment's cache geometry and RoPE specs."""

from __future__ import annotations

import math

import numpy as np

from latentmas_mesh.alignment.kv import KVGeometry
from latentmas_mesh.alignment.rope import RotarySpec
from latentmas_mesh.errors import ModelNotSupported
from latentmas_mesh.registry import ModelSpec, PositionalKind, Registry, default_registry

# Position schemes whose cached keys carry no rotation: nothing to undo before mapping.
_UNROTATED = (PositionalKind.ALIBI, PositionalKind.LEARNED)


def geometry_from_registry(name: str, registry: Registry | None = None) -> KVGeometry:
    """The cache geometry of registry model `name`, with one RotarySpec per layer.

    Raises ModelNotSupported for unknown models, for models that cannot export a cache (closed,
    MLA, unknown geometry; the registry's note says why) and for rope scalings not built here.
    """
    spec = (registry or default_registry()).get(name)
    layers, kv_heads, _, head_dim = spec.kv_shape(0)
    return KVGeometry(
        layers=layers,
        kv_heads=kv_heads,
        head_dim=head_dim,
        rotary=tuple(_layer_rotary(spec, layer, head_dim) for layer in range(layers)),
        name=spec.name,
    )


def _layer_rotary(spec: ModelSpec, layer: int, head_dim: int) -> RotarySpec:
    """Layer `layer`'s rotation; rope_scaling applies to layers on the global base only (as
    gemma-3 applies it to its full-attention layers and not to its local ones)."""
    positional = spec.positional
    if positional.kind in _UNROTATED:
        return RotarySpec.none()
    if positional.kind != PositionalKind.ROPE or positional.rotary_convention is None:
        raise ModelNotSupported(
            f"{spec.name}: {positional.kind.value} positions cannot be re-rotated here",
            details={"model": spec.name, "positional": positional.kind.value},
        )
    theta = spec.rope_theta_for_layer(layer)
    rotary_dim = spec.rotary_dim or head_dim
    base = RotarySpec(
        theta=theta, convention=positional.rotary_convention.value, rotary_dim=rotary_dim
    )
    scaling = positional.rope_scaling
    if scaling is None or theta != positional.rope_theta or scaling.rope_type == "dynamic":
        return base  # dynamic NTK scaling changes nothing within the original context length
    if scaling.rope_type == "linear":
        return RotarySpec(theta, base.convention, rotary_dim, scaling_factor=scaling.factor)
    if scaling.rope_type == "llama3":
        frequencies = _llama3_frequencies(
            base,
            head_dim,
            factor=scaling.factor,
            low_freq_factor=scaling.low_freq_factor,
            high_freq_factor=scaling.high_freq_factor,
            original_context=scaling.original_max_position_embeddings,
        )
        return RotarySpec(theta, base.convention, rotary_dim, inv_freq=frequencies)
    raise ModelNotSupported(
        f"{spec.name}: rope scaling {scaling.rope_type!r} is not supported by the aligner",
        details={"model": spec.name, "rope_type": scaling.rope_type},
    )


def _llama3_frequencies(
    base: RotarySpec,
    head_dim: int,
    *,
    factor: float,
    low_freq_factor: float | None,
    high_freq_factor: float | None,
    original_context: int | None,
) -> tuple[float, ...]:
    """Llama 3.1's scaled ω: long wavelengths divided by `factor`, short ones kept, and a
    smooth blend in between (wavelength λ = 2π/ω compared with context/low and context/high)."""
    if low_freq_factor is None or high_freq_factor is None or original_context is None:
        raise ModelNotSupported("llama3 rope scaling without its three parameters", details={})
    omega = base.inverse_frequencies(head_dim).astype(np.float64)
    wavelength = 2.0 * math.pi / omega
    low_wavelength = original_context / low_freq_factor
    high_wavelength = original_context / high_freq_factor
    smooth = (original_context / wavelength - low_freq_factor) / (
        high_freq_factor - low_freq_factor
    )
    blended = (1.0 - smooth) * omega / factor + smooth * omega
    scaled = np.where(wavelength > low_wavelength, omega / factor, omega)
    medium = (wavelength >= high_wavelength) & (wavelength <= low_wavelength)
    return tuple(float(v) for v in np.where(medium, blended, scaled).astype(np.float32))
