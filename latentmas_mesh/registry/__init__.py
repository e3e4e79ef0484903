"""The model registry (spec Appendix D): a data file of model geometries, lookup, compatibility."""

from __future__ import annotations

from latentmas_mesh.registry._compat import (
    Compatibility,
    CompatibilityTier,
    compatibility,
    compatibility_tier,
    similar_architecture,
)
from latentmas_mesh.registry._registry import (
    Registry,
    RegistryFile,
    RegistryFileError,
    TierLevel,
    default_registry,
    load_registry,
)
from latentmas_mesh.registry._spec import (
    AttentionKind,
    MlaDims,
    ModelSpec,
    Positional,
    PositionalKind,
    RopeScaling,
    RotaryConvention,
    Source,
    SourceKind,
)

__all__ = [
    "AttentionKind",
    "Compatibility",
    "CompatibilityTier",
    "MlaDims",
    "ModelSpec",
    "Positional",
    "PositionalKind",
    "Registry",
    "RegistryFile",
    "RegistryFileError",
    "RopeScaling",
    "RotaryConvention",
    "Source",
    "SourceKind",
    "TierLevel",
    "compatibility",
    "compatibility_tier",
    "default_registry",
    "load_registry",
    "similar_architecture",
]
