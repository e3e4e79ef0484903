"""Fixtures of the alignment services: a service over temporary stores, synthetic model data."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from latentmas_mesh.alignment import AlignmentQuality, KVAligner, geometry_from_registry
from latentmas_mesh.alignment.kv_fit import fit_kv_arrays
from latentmas_mesh.artifacts.anchor_store import AnchorStore
from latentmas_mesh.artifacts.hub_file import HubFile
from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.artifacts.wmatrix_store import WMatrixStore
from latentmas_mesh.protocol.kv import KVCache, KVCacheMetadata
from latentmas_mesh.registry import default_registry
from latentmas_mesh.services.alignment import AlignmentService, ServicePolicy
from latentmas_mesh.settlement.payments import Payments

NOW = dt.datetime(2026, 1, 25, 12, 0, tzinfo=dt.UTC)
SMOL = "smollm2-135m-instruct"
GEMMA = "gemma-3-270m"


def make_service(
    root, price_units: int = 0, payments: Payments | None = None, validators=()
) -> AlignmentService:
    return AlignmentService(
        registry=default_registry(),
        wmatrices=WMatrixStore(root / "wmatrices"),
        anchors=AnchorStore(root / "anchors"),
        kv_maps=KVMapStore(root / "kvmaps"),
        clock=lambda: NOW,
        policy=ServicePolicy(
            unified_dim=16, price_units=price_units, creator="maps-owner", validators=validators
        ),
        hub=HubFile(root / "hub.safetensors"),
        payments=payments,
    )


@pytest.fixture
def service(tmp_path) -> AlignmentService:
    return make_service(tmp_path)


def paired_anchors(rng, rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Two models' activations on the same anchor rows, linear in one 8-d latent."""
    z = rng.standard_normal((rows, 8))
    return (
        (z @ rng.standard_normal((8, 24))).astype(np.float32),
        (z @ rng.standard_normal((8, 32))).astype(np.float32),
    )


def kv_cache(model: str, rng, seq: int = 5, dtype=np.float32) -> KVCache:
    """A random cache of the registry geometry of `model`."""
    geometry = geometry_from_registry(model)
    shape = (geometry.layers, geometry.kv_heads, seq, geometry.head_dim)
    return KVCache(
        source_model=model,
        keys=rng.standard_normal(shape).astype(dtype),
        values=rng.standard_normal(shape).astype(dtype),
        metadata=KVCacheMetadata(
            sequence_length=seq, context_description="test", token_count=seq, generated_at=NOW
        ),
    )


def fitted_smol_to_gemma(rng, rows: int = 160) -> KVAligner:
    """A KV aligner fitted on synthetic caches of smollm2's and gemma-3's registry shapes."""
    source, target = geometry_from_registry(SMOL), geometry_from_registry(GEMMA)
    z = rng.standard_normal((rows, 8))

    def cache(geometry):
        shape = (geometry.layers, geometry.kv_heads, 8, geometry.head_dim)
        keys = np.einsum("nz,lhzd->lhnd", z, rng.standard_normal(shape))
        values = np.einsum("nz,lhzd->lhnd", z, rng.standard_normal(shape))
        return keys.astype(np.float32), values.astype(np.float32)

    (s_keys, s_values), (t_keys, t_values) = cache(source), cache(target)
    positions = np.arange(rows)
    aligner = fit_kv_arrays(
        {"keys": s_keys, "values": s_values}, {"keys": t_keys, "values": t_values},
        source_geometry=source, target_geometry=target, positions=(positions, positions),
        estimator="learned", unified_dim=16, granularity="head",
    ).aligner  # fmt: skip
    # Synthetic caches have no receiver to measure an exchange on: a stated stand-in, which the
    # store requires and the service must pass through unchanged.
    aligner.exchange_quality_ = AlignmentQuality(0.9, 0.2, 0.8, 0.7, 6)
    return aligner
