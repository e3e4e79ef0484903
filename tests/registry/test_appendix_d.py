"""The shipped registry against Appendix D and against the arithmetic of each architecture."""

from __future__ import annotations

import pytest

from latentmas_mesh.registry import (
    AttentionKind,
    ModelSpec,
    PositionalKind,
    Registry,
    RotaryConvention,
    SourceKind,
    load_registry,
)

# Every model name of the spec's Appendix D.1 table, transcribed row by row.
APPENDIX_D1 = {
    "OpenAI GPT": ["gpt-3.5", "gpt-4", "gpt-4-turbo", "gpt-4o", "o1", "o1-mini"],
    "Anthropic Claude": ["claude-3-opus", "claude-3-sonnet", "claude-3-haiku", "claude-3.5-sonnet"],
    "Meta LLaMA": [
        "llama-2-7b",
        "llama-2-13b",
        "llama-2-70b",
        "llama-3-8b",
        "llama-3-70b",
        "llama-3.1-8b",
        "llama-3.1-70b",
        "llama-3.1-405b",
    ],
    "Mistral": ["mistral-7b", "mixtral-8x7b", "mixtral-8x22b", "mistral-large"],
    "Google Gemini": ["gemini-pro", "gemini-ultra", "gemini-1.5-pro", "gemini-1.5-flash"],
    "Alibaba Qwen": [
        "qwen-7b",
        "qwen-14b",
        "qwen-72b",
        "qwen-2-7b",
        "qwen-2-72b",
        "qwen-2.5-7b",
        "qwen-2.5-72b",
    ],
    "DeepSeek": [
        "deepseek-7b",
        "deepseek-67b",
        "deepseek-coder-7b",
        "deepseek-coder-33b",
        "deepseek-v2",
        "deepseek-v2.5",
        "deepseek-v3",
    ],
    "01.AI Yi": ["yi-6b", "yi-34b", "yi-1.5-9b", "yi-1.5-34b"],
    "Baichuan": ["baichuan-7b", "baichuan-13b", "baichuan2-7b", "baichuan2-13b"],
    "Microsoft Phi": ["phi-2", "phi-3-mini", "phi-3-small", "phi-3-medium"],
    "InternLM": ["internlm-7b", "internlm-20b", "internlm2-7b", "internlm2-20b"],
    "ChatGLM": ["chatglm-6b", "chatglm2-6b", "chatglm3-6b", "glm-4"],
    "Cohere": ["command-r", "command-r-plus"],
    "xAI Grok": ["grok-1", "grok-2"],
}
D1_NAMES = [name for names in APPENDIX_D1.values() for name in names]
CLOSED_FAMILIES = {"OpenAI GPT", "Anthropic Claude", "Google Gemini"}

# Architectures whose heads x head_dim is not the hidden size, and why.
HEADS_TIMES_HEAD_DIM_EXCEPTIONS = {
    "gemma3_text": "gemma-3 sets head_dim (256) independently of hidden_size / heads",
    "deepseek_v2": "MLA: head_dim is the q/k size nope+rope (192), not hidden / heads",
    "deepseek_v3": "MLA: head_dim is the q/k size nope+rope (192), not hidden / heads",
}

_REGISTRY = load_registry()
OPEN = [m for m in _REGISTRY.models() if m.open_weights]
CLOSED = [m for m in _REGISTRY.models() if not m.open_weights]
ROTARY = [m for m in OPEN if m.rotary_dim]
COUPLED = [m for m in OPEN if m.architecture not in HEADS_TIMES_HEAD_DIM_EXCEPTIONS]


def _ids(specs: list[ModelSpec]) -> list[str]:
    return [m.name for m in specs]


def geometry(
    spec: ModelSpec,
) -> tuple[int | None, int | None, int | None, int | None, int | None, float | None]:
    """(layers, heads, kv heads, head_dim, hidden, rope_theta): what a config.json check reads."""
    return (
        spec.num_layers,
        spec.num_attention_heads,
        spec.num_kv_heads,
        spec.head_dim,
        spec.hidden_size,
        spec.positional.rope_theta,
    )


class TestAppendixD:
    def test_the_registry_lists_at_least_sixty_models(self, registry: Registry):
        """D.1 promises 60+ models; the shipped file must hold them."""
        assert len(registry) >= 60

    def test_the_transcription_holds_every_d1_name(self):
        """The transcribed D.1 table has its 64 names, each once."""
        assert 64 == len(D1_NAMES) == len(set(D1_NAMES))

    @pytest.mark.parametrize("name", D1_NAMES)
    def test_every_d1_name_resolves_to_itself(self, registry: Registry, name: str):
        """Each D.1 name is a canonical entry, not only an alias."""
        assert name == registry.get(name).name

    @pytest.mark.parametrize("family", sorted(CLOSED_FAMILIES))
    def test_proprietary_families_are_closed(self, registry: Registry, family: str):
        """GPT, Claude and Gemini publish no weights, so none of them exports a cache."""
        specs = [registry.get(name) for name in APPENDIX_D1[family]]

        assert [False] * len(specs) == [m.open_weights or m.kv_export for m in specs]

    def test_the_two_integration_models_are_present_and_verified(self, registry: Registry):
        """The real models of the integration tests have checked numbers and export caches."""
        specs = [registry.get("smollm2-135m-instruct"), registry.get("gemma-3-270m")]

        assert [(True, True)] * 2 == [(m.kv_export, m.source.verified) for m in specs]


class TestRealModelNumbers:
    def test_smollm2_matches_its_config(self, registry: Registry):
        """SmolLM2-135M-Instruct: 30 layers, 9 heads, 3 kv heads, 64, 576, theta 1e5, half."""
        spec = registry.get("HuggingFaceTB/SmolLM2-135M-Instruct")

        assert (30, 9, 3, 64, 576, 100000.0, RotaryConvention.HALF) == (
            *geometry(spec),
            spec.positional.rotary_convention,
        )

    def test_gemma3_270m_matches_its_config(self, registry: Registry):
        """gemma-3-270m: 18 layers, 4 heads, 1 kv head, 256, 640, full attention at 5, 11, 17."""
        spec = registry.get("google/gemma-3-270m")
        full = [i for i, kind in enumerate(spec.layer_types or ()) if kind == "full_attention"]

        assert (18, 4, 1, 256, 640, 512, 256.0) == (
            spec.num_layers,
            spec.num_attention_heads,
            spec.num_kv_heads,
            spec.head_dim,
            spec.hidden_size,
            spec.sliding_window,
            spec.query_pre_attn_scalar,
        )
        assert [5, 11, 17] == full


# Spot checks made in review against public copies of each config.json (found with the search
# tools): layers, heads, kv heads, head_dim, hidden, rope_theta. Copies read:
# ThanatosShinji/onnx-tool onnx_tool/model_configs.py (llama-2-7b-chat, Llama-3-8B, Llama-3.1-70B,
# Qwen2-7B, Qwen2-72B-Instruct, phi-2, Phi-3-mini/medium/small, Yi-1.5-34B);
# InternLM/InternEvo-HFModels huggingface_model/Yi/Yi_6B/configuration_yi.py (Yi-6B);
# a Mixtral-8x7B-v0.1 training config and a printed MixtralConfig; printed SmolLM2-135M configs;
# an MLX conversion's internlm2-7b config (which also carries rope_scaling dynamic x2).
SPOT_CHECKED = {
    "llama-2-7b": (32, 32, 32, 128, 4096, 10000.0),
    "llama-3-8b": (32, 32, 8, 128, 4096, 500000.0),
    "llama-3.1-70b": (80, 64, 8, 128, 8192, 500000.0),
    "mixtral-8x7b": (32, 32, 8, 128, 4096, 1000000.0),
    "qwen-2-7b": (28, 28, 4, 128, 3584, 1000000.0),
    "qwen-2-72b": (80, 64, 8, 128, 8192, 1000000.0),
    "phi-2": (32, 32, 32, 80, 2560, 10000.0),
    "phi-3-mini": (32, 32, 32, 96, 3072, 10000.0),
    "phi-3-small": (32, 32, 8, 128, 4096, 1000000.0),
    "phi-3-medium": (40, 40, 10, 128, 5120, 10000.0),
    "yi-6b": (32, 32, 4, 128, 4096, 5000000.0),
    "yi-1.5-34b": (60, 56, 8, 128, 7168, 5000000.0),
    "internlm2-7b": (32, 32, 8, 128, 4096, 1000000.0),
    "smollm2-135m-instruct": (30, 9, 3, 64, 576, 100000.0),
}


class TestSpotChecks:
    @pytest.mark.parametrize("name", sorted(SPOT_CHECKED))
    def test_numbers_match_a_public_copy_of_the_config(self, registry: Registry, name: str):
        """The registry's geometry equals the figures read from a public config.json copy."""
        spec = registry.get(name)

        assert SPOT_CHECKED[name] == geometry(spec)

    def test_llama31_and_internlm2_keep_their_rope_scaling(self, registry: Registry):
        """llama-3.1 scales rope as llama3 x8 from 8192; internlm2-7b uses dynamic NTK x2."""
        llama = registry.get("llama-3.1-70b").positional.rope_scaling
        internlm = registry.get("internlm2-7b").positional.rope_scaling
        assert llama is not None
        assert internlm is not None

        assert (("llama3", 8.0, 8192, 1.0, 4.0), ("dynamic", 2.0)) == (
            (
                llama.rope_type,
                llama.factor,
                llama.original_max_position_embeddings,
                llama.low_freq_factor,
                llama.high_freq_factor,
            ),
            (internlm.rope_type, internlm.factor),
        )


class TestOpenModelArithmetic:
    @pytest.mark.parametrize("spec", OPEN, ids=_ids(OPEN))
    def test_open_model_claims_every_dimension_from_a_named_file(self, spec: ModelSpec):
        """An open model's five dimensions are positive and come from a named published file."""
        dims = spec.dimension_fields()

        assert all(isinstance(v, int) and v > 0 for v in dims.values()), dims
        assert spec.source.kind in (SourceKind.CONFIG_JSON, SourceKind.REFERENCE_CODE)
        assert spec.source.repo

    @pytest.mark.parametrize("spec", OPEN, ids=_ids(OPEN))
    def test_kv_heads_divide_attention_heads(self, spec: ModelSpec):
        """Grouped-query attention shares each kv head among a whole number of query heads."""
        assert spec.num_attention_heads is not None
        assert spec.num_kv_heads is not None

        assert 0 == spec.num_attention_heads % spec.num_kv_heads

    @pytest.mark.parametrize("spec", COUPLED, ids=_ids(COUPLED))
    def test_heads_times_head_dim_is_the_hidden_size(self, spec: ModelSpec):
        """heads x head_dim == hidden for every architecture that does not decouple them."""
        assert spec.num_attention_heads is not None
        assert spec.head_dim is not None

        assert spec.hidden_size == spec.num_attention_heads * spec.head_dim

    def test_only_the_documented_architectures_decouple_head_dim(self):
        """The exceptions are exactly gemma-3 and the MLA models, and they do differ."""
        decoupled = [m for m in OPEN if m.architecture in HEADS_TIMES_HEAD_DIM_EXCEPTIONS]

        assert ["deepseek-v2", "deepseek-v2.5", "deepseek-v3", "gemma-3-270m"] == sorted(
            m.name for m in decoupled
        )
        assert all(
            m.hidden_size != (m.num_attention_heads or 0) * (m.head_dim or 0) for m in decoupled
        )

    @pytest.mark.parametrize("spec", OPEN, ids=_ids(OPEN))
    def test_attention_kind_matches_the_head_counts(self, spec: ModelSpec):
        """MHA has kv == q heads, MQA one kv head, GQA a proper divisor; MLA is its own kind."""
        heads, kv = spec.num_attention_heads, spec.num_kv_heads
        expected = (
            AttentionKind.MLA
            if spec.positional.kind == PositionalKind.MLA
            else AttentionKind.MQA
            if kv == 1
            else AttentionKind.MHA
            if kv == heads
            else AttentionKind.GQA
        )

        assert expected == spec.attention

    @pytest.mark.parametrize("spec", ROTARY, ids=_ids(ROTARY))
    def test_rotary_dimension_is_even(self, spec: ModelSpec):
        """Rotary embeddings rotate coordinate pairs, so the rotated width is even."""
        assert spec.rotary_dim is not None

        assert 0 == spec.rotary_dim % 2

    def test_mla_models_record_their_latent_geometry(self):
        """DeepSeek V2/V2.5/V3 keep kv_lora_rank and the split head sizes, and export no cache."""
        mla = [m for m in OPEN if m.positional.kind == PositionalKind.MLA]

        assert ["deepseek-v2", "deepseek-v2.5", "deepseek-v3"] == [m.name for m in mla]
        assert all(m.mla is not None and m.mla.kv_lora_rank == 512 for m in mla)
        assert not any(m.kv_export for m in mla)

    def test_known_positional_exceptions_are_recorded(self, registry: Registry):
        """Baichuan-13B uses ALiBi, phi-2 rotates 40%, ChatGLM2/3 rotate half, interleaved."""
        glm = registry.get("chatglm3-6b").positional

        assert PositionalKind.ALIBI == registry.get("baichuan-13b").positional.kind
        assert 0.4 == registry.get("phi-2").positional.rotary_fraction
        assert (0.5, RotaryConvention.INTERLEAVED) == (glm.rotary_fraction, glm.rotary_convention)


class TestClosedModels:
    @pytest.mark.parametrize("spec", CLOSED, ids=_ids(CLOSED))
    def test_closed_model_claims_no_dimension(self, spec: ModelSpec):
        """A closed model exports nothing and states no dimension as fact."""
        assert (False, SourceKind.UNKNOWN, False) == (
            spec.kv_export,
            spec.source.kind,
            spec.source.verified,
        )
        assert [None] * 5 == list(spec.dimension_fields().values())
        assert PositionalKind.UNKNOWN == spec.positional.kind
