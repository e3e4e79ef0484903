"""One registry entry: attention geometry, positional encoding, and where each number comes from."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from latentmas_mesh.errors import DimensionMismatch, ModelNotSupported

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class PositionalKind(StrEnum):
    """How a model encodes positions, which decides how its cached keys can be (de)rotated.

    `rope`: rotary embedding applied to keys before they are cached (keys must be de-rotated).
    `rope_2d`: GLM's two-dimensional rotary (position and block position, one per half of head_dim).
    `mla`: DeepSeek multi-head latent attention: a compressed latent plus a decoupled RoPE key.
    `alibi`: linear attention biases; cached keys carry no position.
    `learned`: absolute learned embeddings added to the input; cached keys carry no rotation.
    `unknown`: unpublished (closed models).
    """

    ROPE = "rope"
    ROPE_2D = "rope_2d"
    MLA = "mla"
    ALIBI = "alibi"
    LEARNED = "learned"
    UNKNOWN = "unknown"


class RotaryConvention(StrEnum):
    """Which coordinates a rotary embedding pairs, as the exporting implementation applies it.

    `half`: GPT-NeoX `rotate_half`, coordinate i pairs with i + rot_dim/2 (Hugging Face llama).
    `interleaved`: GPT-J style, 2i pairs with 2i+1 (original Meta llama, ChatGLM, Cohere).
    """

    HALF = "half"
    INTERLEAVED = "interleaved"


class AttentionKind(StrEnum):
    """Query/key-value head sharing: MHA (kv == q heads), GQA (groups), MQA (one kv head), MLA."""

    MHA = "mha"
    GQA = "gqa"
    MQA = "mqa"
    MLA = "mla"
    UNKNOWN = "unknown"


class SourceKind(StrEnum):
    """Where a model's numbers come from.

    `config.json`: the published Hugging Face config of `repo`.
    `reference_code`: the vendor's published model code (e.g. xai-org/grok-1's run.py).
    `unknown`: the vendor never published them; no dimension is claimed.
    """

    CONFIG_JSON = "config.json"
    REFERENCE_CODE = "reference_code"
    UNKNOWN = "unknown"


class Source(BaseModel):
    """Provenance of an entry's numbers: which file of which repository, or why there is none.

    `verified` is True when the numbers were checked against a public copy of that file (or of
    the vendor's code) while building the registry; `note` says what was and was not checked.
    """

    model_config = _FROZEN

    kind: SourceKind
    repo: str | None = None
    file: str | None = None
    verified: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _published_sources_name_their_repo(self) -> Self:
        if self.kind != SourceKind.UNKNOWN and not (self.repo and self.file):
            raise ValueError(f"a {self.kind.value} source must name its repo and file")
        if self.kind == SourceKind.UNKNOWN and self.verified:
            raise ValueError("an unknown source cannot be verified")
        if not self.verified and not self.note:
            raise ValueError("an unverified or unknown source must say why in `note`")
        return self


class RopeScaling(BaseModel):
    """A config.json `rope_scaling` block, kept because it changes the rotation angles.

    `original` is xAI grok-2's own YaRN-like scheme (its config's `rope_type`), kept verbatim.
    """

    model_config = _FROZEN

    rope_type: Literal["linear", "dynamic", "llama3", "yarn", "longrope", "original"]
    factor: float = Field(gt=0)
    original_max_position_embeddings: int | None = Field(default=None, gt=0)
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    beta_fast: float | None = None
    beta_slow: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    extrapolation_factor: float | None = None
    attn_factor: float | None = None


class Positional(BaseModel):
    """Positional encoding as needed to de-rotate cached keys and re-rotate them for another model.

    `rotary_fraction` is the share of head_dim that is rotated (phi-2: 0.4; ChatGLM2/3: 0.5).
    `layer_rope_thetas` is set only where layers use different bases (gemma-3: local vs global).
    """

    model_config = _FROZEN

    kind: PositionalKind
    rope_theta: float | None = Field(default=None, gt=0)
    rotary_convention: RotaryConvention | None = None
    rotary_fraction: float = Field(default=1.0, gt=0, le=1)
    rope_scaling: RopeScaling | None = None
    layer_rope_thetas: tuple[float, ...] | None = None
    note: str = ""

    @model_validator(mode="after")
    def _rotary_kinds_say_how_they_rotate(self) -> Self:
        rotary = self.kind in (PositionalKind.ROPE, PositionalKind.ROPE_2D, PositionalKind.MLA)
        if rotary and self.rope_theta is None:
            raise ValueError(f"{self.kind.value} needs rope_theta")
        if not rotary and (self.rope_theta is not None or self.layer_rope_thetas is not None):
            raise ValueError(f"{self.kind.value} has no rotary base; rope_theta must be null")
        if self.layer_rope_thetas is not None and any(t <= 0 for t in self.layer_rope_thetas):
            raise ValueError("layer_rope_thetas must all be positive")
        return self


# Caches that are not [kv_heads, seq, head_dim] keys a receiver could de-rotate from seq alone.
_NOT_EXPORTABLE = (PositionalKind.UNKNOWN, PositionalKind.MLA, PositionalKind.ROPE_2D)


class MlaDims(BaseModel):
    """DeepSeek MLA geometry (config.json names): the cache holds a kv_lora_rank latent per token
    plus one shared qk_rope_head_dim rotary key, not [kv_heads, seq, head_dim] keys and values."""

    model_config = _FROZEN

    kv_lora_rank: int = Field(gt=0)
    q_lora_rank: int | None = Field(default=None, gt=0)
    qk_rope_head_dim: int = Field(gt=0)
    qk_nope_head_dim: int = Field(gt=0)
    v_head_dim: int = Field(gt=0)


class ModelSpec(BaseModel):
    """One model of the registry (spec Appendix D.1).

    Dimensions are None where the vendor never published them; `kv_export` is True only when a
    cache of shape [layers, kv_heads, seq, head_dim] can be exported and aligned for this model.
    """

    model_config = _FROZEN

    name: str = Field(min_length=1)
    family: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    hf_repo: str | None = None
    architecture: str | None = None
    open_weights: bool
    kv_export: bool
    kv_export_note: str = ""
    attention: AttentionKind = AttentionKind.UNKNOWN
    num_layers: int | None = Field(default=None, gt=0)
    num_attention_heads: int | None = Field(default=None, gt=0)
    num_kv_heads: int | None = Field(default=None, gt=0)
    head_dim: int | None = Field(default=None, gt=0)
    hidden_size: int | None = Field(default=None, gt=0)
    max_position_embeddings: int | None = Field(default=None, gt=0)
    positional: Positional
    mla: MlaDims | None = None
    layer_types: tuple[Literal["full_attention", "sliding_attention"], ...] | None = None
    sliding_window: int | None = Field(default=None, gt=0)
    num_experts: int | None = Field(default=None, gt=0)
    query_pre_attn_scalar: float | None = Field(default=None, gt=0)
    capability_tier: int = Field(ge=1, le=5)
    spec_key_dimension: str | None = None
    source: Source
    notes: str = ""

    @model_validator(mode="after")
    def _claims_are_consistent(self) -> Self:
        dims = self.dimension_fields()
        known = [v for v in dims.values() if v is not None]
        if self.source.kind == SourceKind.UNKNOWN and known:
            raise ValueError(f"{self.name}: dimensions claimed without a published source")
        if self.kv_export and not self.open_weights:
            raise ValueError(f"{self.name}: a closed model cannot export its KV cache")
        if self.kv_export and len(known) != len(dims):
            raise ValueError(f"{self.name}: kv_export needs every dimension")
        if self.kv_export and self.positional.kind in _NOT_EXPORTABLE:
            raise ValueError(f"{self.name}: kv_export needs a per-head positional encoding")
        rotary = self.positional.rope_theta is not None
        if self.kv_export and rotary and self.positional.rotary_convention is None:
            raise ValueError(f"{self.name}: kv_export of rotated keys needs rotary_convention")
        if not self.kv_export and not self.kv_export_note:
            raise ValueError(f"{self.name}: say in kv_export_note why the cache is not exported")
        heads, kv_heads = self.num_attention_heads, self.num_kv_heads
        if heads and kv_heads and heads % kv_heads:
            raise ValueError(f"{self.name}: attention heads not a multiple of kv heads")
        self._check_per_layer_lists()
        return self

    def _check_per_layer_lists(self) -> None:
        for label, values in (
            ("layer_types", self.layer_types),
            ("layer_rope_thetas", self.positional.layer_rope_thetas),
        ):
            if values is not None and len(values) != self.num_layers:
                raise ValueError(f"{self.name}: {label} has {len(values)} entries, not num_layers")

    def dimension_fields(self) -> dict[str, int | None]:
        """The five numbers a KV cache's shape and an alignment map depend on."""
        return {
            "num_layers": self.num_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_size": self.hidden_size,
        }

    def kv_shape(self, seq_len: int) -> tuple[int, int, int, int]:
        """Canonical cache shape (layers, kv_heads, seq, head_dim) for a `seq_len`-token context.

        Raises ModelNotSupported for models whose cache cannot be exported (closed, MLA, unknown).
        """
        if seq_len < 0:
            raise DimensionMismatch(
                f"sequence length must be >= 0, got {seq_len}", details={"seq_len": seq_len}
            )
        if not self.kv_export:
            raise ModelNotSupported(
                f"{self.name} does not export a KV cache: {self.kv_export_note}",
                details={"model": self.name, "reason": self.kv_export_note},
            )
        # kv_export guarantees every dimension (validator above); narrow for the type checker.
        layers, kv_heads, head_dim = self.num_layers, self.num_kv_heads, self.head_dim
        if layers is None or kv_heads is None or head_dim is None:
            raise ModelNotSupported(f"{self.name} has unknown dimensions")
        return (layers, kv_heads, seq_len, head_dim)

    def rope_theta_for_layer(self, layer: int) -> float:
        """RoPE base used by layer `layer` (0-based): per-layer where layers differ, else global.

        Raises ModelNotSupported for models without rotary keys, DimensionMismatch for a bad index.
        """
        theta = self.positional.rope_theta
        if theta is None:
            raise ModelNotSupported(
                f"{self.name} uses {self.positional.kind.value} positions, not RoPE",
                details={"model": self.name, "positional": self.positional.kind.value},
            )
        if self.num_layers is None or not 0 <= layer < self.num_layers:
            raise DimensionMismatch(
                f"{self.name} has no layer {layer}",
                details={"model": self.name, "layer": layer, "num_layers": self.num_layers},
            )
        per_layer = self.positional.layer_rope_thetas
        return per_layer[layer] if per_layer is not None else theta

    @property
    def rotary_dim(self) -> int | None:
        """Number of rotated coordinates per key head (head_dim x rotary_fraction)."""
        if self.head_dim is None or self.positional.rope_theta is None:
            return None
        if self.mla is not None:
            return self.mla.qk_rope_head_dim
        return round(self.head_dim * self.positional.rotary_fraction)
