"""Anchor activations: keys before and after RoPE, values, hidden states, offsets; export files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latentmas_mesh.anchors import load_anchor_passages
from latentmas_mesh.integrations.hf import (
    LoadedModel,
    export_anchor_activations,
    extract_kv_cache,
    passage_activations,
    read_anchor_activations,
    tokenize_context,
)

pytestmark = pytest.mark.realmodel

TEXT = "Call me Ishmael. Some years ago, never mind how long precisely, I went to sea."


def rotate_half_convention(keys: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    """Test-local RoPE (GPT-NeoX rotate_half) of keys [heads, seq, dim] at positions [seq]."""
    dim = keys.shape[-1]
    inverse_frequency = 1.0 / theta ** (np.arange(0, dim, 2) / dim)
    angles = positions[:, None] * inverse_frequency[None, :]
    cos = np.cos(np.concatenate([angles, angles], axis=-1))
    sin = np.sin(np.concatenate([angles, angles], axis=-1))
    rotated = np.concatenate([-keys[..., dim // 2 :], keys[..., : dim // 2]], axis=-1)
    return keys * cos + rotated * sin


class TestPassageActivations:
    @pytest.mark.parametrize("which", ["model_a", "model_b"])
    def test_activation_shapes_follow_the_registry(self, which: str, request):
        """Keys (both), values [layers, heads, n, dim]; hidden states [layers + 1, n, hidden]."""
        loaded: LoadedModel = request.getfixturevalue(which)
        context = tokenize_context(loaded, TEXT)

        acts = passage_activations(loaded, context)

        spec = loaded.spec
        assert spec.kv_shape(len(context)) == acts.keys.shape == acts.keys_pre_rope.shape
        assert acts.keys.shape == acts.values.shape
        assert (spec.num_layers + 1, len(context), spec.hidden_size) == acts.hidden_states.shape
        assert (len(context), 2) == acts.offsets.shape

    @pytest.mark.parametrize("which", ["model_a", "model_b"])
    def test_registry_rope_turns_pre_rope_keys_into_cached_keys(self, which: str, request):
        """Rotating observed pre-RoPE keys by the registry's per-layer theta gives the cache."""
        loaded: LoadedModel = request.getfixturevalue(which)
        acts = passage_activations(loaded, TEXT, include_hidden=False)
        positions = np.arange(acts.keys.shape[2], dtype=np.float64)

        worst = max(
            float(
                np.abs(
                    rotate_half_convention(
                        acts.keys_pre_rope[layer].astype(np.float64),
                        positions,
                        loaded.spec.rope_theta_for_layer(layer),
                    )
                    - acts.keys[layer]
                ).max()
            )
            for layer in range(acts.keys.shape[0])
        )

        assert worst < 1e-3

    def test_activation_keys_are_the_exported_cache(self, model_a):
        """The cached keys of an activation export equal what extract_kv_cache exports."""
        acts = passage_activations(model_a, TEXT, include_hidden=False)

        kv = extract_kv_cache(model_a, TEXT)

        np.testing.assert_allclose(kv.keys, acts.keys, atol=1e-5)


class TestExport:
    def test_export_writes_one_file_per_passage_and_a_manifest(self, model_a, tmp_path: Path):
        """Two passages give two safetensors files that read back, and a manifest naming them."""
        passages = load_anchor_passages()[:2]

        manifest_path = export_anchor_activations(
            model_a, tmp_path, passages=passages, tokens_max=12, include_hidden=False
        )
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        first = read_anchor_activations(tmp_path, passages[0].id)

        assert [p.id for p in passages] == manifest["passage_ids"]
        assert "smollm2-135m-instruct" == manifest["model"]
        assert (30, 3, 13, 64) == first.keys_pre_rope.shape
        assert np.float16 == first.keys.dtype
        assert first.hidden_states is None
