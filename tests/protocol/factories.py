"""Valid example messages and hypothesis strategies for every registered message type."""

from __future__ import annotations

import datetime as dt
from typing import Any

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

from latentmas_mesh import protocol as p
from latentmas_mesh.errors import ERROR_CLASSES
from latentmas_mesh.protocol import wmatrix as wm

KV_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
GENERATED_AT = dt.datetime(2026, 1, 25, 12, 30, 5, 123456, tzinfo=dt.UTC)


def kv_cache(
    rng: np.random.Generator,
    *,
    layers: int = 2,
    heads: int = 2,
    seq: int = 3,
    head_dim: int = 4,
    dtype: str = "float16",
    with_optional: bool = True,
) -> p.KVCache:
    """A small valid KVCache with random finite values."""
    shape = (layers, heads, seq, head_dim)
    keys = rng.standard_normal(shape, dtype=np.float32).astype(KV_DTYPES[dtype])
    values = rng.standard_normal(shape, dtype=np.float32).astype(KV_DTYPES[dtype])
    return p.KVCache(
        source_model="llama-3-8b",
        keys=keys,
        values=values,
        attention_mask=np.ones((1, seq), dtype=np.int64) if with_optional else None,
        position_encodings=np.arange(seq, dtype=np.int64) if with_optional else None,
        metadata=p.KVCacheMetadata(
            sequence_length=seq,
            context_description="a legal document, analysed",
            token_count=seq,
            generated_at=GENERATED_AT,
        ),
    )


def quality() -> p.AlignmentQuality:
    return p.AlignmentQuality(
        cosine_similarity=0.93, euclidean_distance=0.12, information_retention=0.95, confidence=0.91
    )


def w_quality() -> p.WMatrixQualityMetrics:
    return p.WMatrixQualityMetrics(
        expected_quality=0.94, information_retention=0.96, computational_cost=32768
    )


def example_messages(rng: np.random.Generator) -> dict[str, p.WireModel]:
    """One valid instance of every message type this area registers, keyed by type name."""
    kv = kv_cache(rng)
    return {
        "kv_cache": kv,
        "w_matrix_standard": p.WMatrixStandard(
            version="1.0.0",
            source_model="gpt-4",
            target_model="llama-3-70b",
            unified_dimension=128,
            method="hybrid",
            transformation_rules=p.TransformationRules(
                orthogonal_matrix=rng.standard_normal((8, 4)),
                shared_parameters=rng.standard_normal(3).astype(np.float32),
                scaling_factors=np.ones(4, dtype=np.float32),
            ),
            quality_metrics=w_quality(),
        ),
        "generate_w_matrix_request": p.GenerateWMatrixRequest(
            source_model="gpt-4", target_model="llama-3-70b", method="orthogonal"
        ),
        "generate_w_matrix_response": p.GenerateWMatrixResponse(
            version="1.0.0", unified_dimension=128, quality_metrics=w_quality()
        ),
        "w_matrix_versions_request": wm.WMatrixVersionsRequest(
            source_model="smollm2-135m-instruct", target_model="gemma-3-270m"
        ),
        "w_matrix_versions_reply": wm.WMatrixVersionsReply(
            source_model="smollm2-135m-instruct",
            target_model="gemma-3-270m",
            w_matrices=(
                wm.StoredWMatrix(
                    version="1.0.0",
                    method="orthogonal",
                    unified_dimension=128,
                    quality_metrics=w_quality(),
                ),
            ),
            kv_maps=(
                wm.StoredKVMaps(version="1.0.0", alignment_quality=quality()),
                wm.StoredKVMaps(version="1.1.0", alignment_quality=None),
            ),
        ),
        "align_kv_cache_request": p.AlignKVCacheRequest(
            kv_cache=kv, target_model="llama-3-70b", w_matrix_version="1.0.0"
        ),
        "align_kv_cache_response": p.AlignKVCacheResponse(
            aligned_kv_cache=kv, alignment_quality=quality()
        ),
        "exchange_memory_request": p.ExchangeMemoryRequest(
            kv_source=kv,
            source_model="llama-3-8b",
            target_model="qwen-2.5-7b",
            reservation_id="5f0c2a9e4b7d4e1a8c3f6b2d9e0a1c47",
        ),
        "exchange_memory_response": p.ExchangeMemoryResponse(kv_aligned=kv, quality=quality()),
        "align_vector_request": p.AlignVectorRequest(
            vector=rng.standard_normal(16).astype(np.float32),
            source_model="gpt-4",
            target_model="bert",
        ),
        "align_vector_response": p.AlignVectorResponse(
            aligned_vectors=rng.standard_normal((2, 8)).astype(np.float32),
            alignment_quality=quality(),
        ),
        "error": p.ErrorBody.from_error(
            ERROR_CLASSES[p.errors.ErrorCode.DIMENSION_MISMATCH](
                "keys are 64 wide", details={"d": 64}
            )
        ),
    }


# ---------------------------------------------------------------- hypothesis strategies


def models(cls: type[Any], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`cls(**drawn fields)`; unlike st.builds it never infers the extra alias parameters."""
    return st.fixed_dictionaries(fields).map(lambda kwargs: cls(**kwargs))


names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40
)
unit = st.floats(0.0, 1.0, allow_nan=False)
datetimes = st.datetimes(
    min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
)
versions = st.tuples(*[st.integers(0, 999)] * 3).map(lambda t: ".".join(map(str, t)))
reservation_ids = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True))


def finite_arrays(shape: tuple[int, ...], dtype: str) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    """Arrays of `shape` and wire dtype `dtype` with finite values, built from float32 draws."""
    count = int(np.prod(shape))
    elements = st.floats(-1e4, 1e4, allow_nan=False, width=32)
    target = p.DTYPES[dtype]
    return st.lists(elements, min_size=count, max_size=count).map(
        lambda xs: np.asarray(xs, dtype=np.float32).astype(target).reshape(shape)
    )


@st.composite
def kv_caches(draw: st.DrawFn, dtype: str | None = None) -> p.KVCache:
    dtype = dtype or draw(st.sampled_from(sorted(KV_DTYPES)))
    layers, heads, seq = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    head_dim, value_dim = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    with_mask, with_positions = draw(st.booleans()), draw(st.booleans())
    return p.KVCache(
        source_model=draw(names),
        keys=draw(finite_arrays((layers, heads, seq, head_dim), dtype)),
        values=draw(finite_arrays((layers, heads, seq, value_dim), dtype)),
        attention_mask=np.ones((1, seq), dtype=np.bool_) if with_mask else None,
        position_encodings=np.arange(seq, dtype=np.int32) if with_positions else None,
        metadata=p.KVCacheMetadata(
            sequence_length=seq,
            context_description=draw(st.text(max_size=50)),
            token_count=draw(st.integers(0, 1000)),
            generated_at=draw(datetimes),
        ),
    )


alignment_qualities = models(
    p.AlignmentQuality,
    cosine_similarity=st.floats(-1.0, 1.0),
    euclidean_distance=st.floats(0.0, 1e6),
    information_retention=unit,
    confidence=unit,
)
w_qualities = models(
    p.WMatrixQualityMetrics,
    expected_quality=unit,
    information_retention=unit,
    computational_cost=st.one_of(st.integers(0, 2**40), st.floats(0, 1e12)),
)
methods = st.sampled_from(["orthogonal", "learned", "hybrid"])
float_dtypes = st.sampled_from(sorted(p.FLOAT_DTYPE_NAMES))


@st.composite
def w_matrices(draw: st.DrawFn) -> p.WMatrixStandard:
    dtype = draw(float_dtypes)
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    optional = st.booleans()
    return p.WMatrixStandard(
        version=draw(versions),
        source_model=draw(names),
        target_model=draw(names),
        unified_dimension=draw(st.integers(1, 4096)),
        method=draw(methods),
        transformation_rules=p.TransformationRules(
            orthogonal_matrix=draw(finite_arrays((rows, cols), dtype)) if draw(optional) else None,
            shared_parameters=draw(finite_arrays((rows,), dtype)) if draw(optional) else None,
            scaling_factors=draw(finite_arrays((cols,), dtype)) if draw(optional) else None,
        ),
        quality_metrics=draw(w_qualities),
    )


@st.composite
def vector_requests(draw: st.DrawFn) -> p.AlignVectorRequest:
    dtype, width = draw(float_dtypes), draw(st.integers(1, 8))
    if draw(st.booleans()):
        return p.AlignVectorRequest(
            vector=draw(finite_arrays((width,), dtype)),
            source_model=draw(names),
            target_model="bert",
            reservation_id=draw(reservation_ids),
        )
    batch = draw(finite_arrays((draw(st.integers(1, 3)), width), dtype))
    return p.AlignVectorRequest(
        vectors=batch,
        source_model=draw(names),
        target_model="bert",
        reservation_id=draw(reservation_ids),
    )


@st.composite
def vector_responses(draw: st.DrawFn) -> p.AlignVectorResponse:
    dtype, width = draw(float_dtypes), draw(st.integers(1, 8))
    quality_or_none = draw(st.one_of(st.none(), alignment_qualities))
    if draw(st.booleans()):
        vector = draw(finite_arrays((width,), dtype))
        return p.AlignVectorResponse(aligned_vector=vector, alignment_quality=quality_or_none)
    batch = draw(finite_arrays((draw(st.integers(1, 3)), width), dtype))
    return p.AlignVectorResponse(aligned_vectors=batch, alignment_quality=quality_or_none)


json_details = st.dictionaries(
    st.text(max_size=10),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    ),
    max_size=4,
)

MESSAGE_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "kv_cache": kv_caches(),
    "w_matrix_standard": w_matrices(),
    "generate_w_matrix_request": models(
        p.GenerateWMatrixRequest, source_model=names, target_model=names, method=methods
    ),
    "generate_w_matrix_response": models(
        p.GenerateWMatrixResponse,
        version=versions,
        unified_dimension=st.integers(1, 4096),
        quality_metrics=w_qualities,
    ),
    "w_matrix_versions_request": models(
        wm.WMatrixVersionsRequest, source_model=names, target_model=names
    ),
    "w_matrix_versions_reply": models(
        wm.WMatrixVersionsReply,
        source_model=names,
        target_model=names,
        w_matrices=st.lists(
            models(
                wm.StoredWMatrix,
                version=versions,
                method=methods,
                unified_dimension=st.integers(1, 4096),
                quality_metrics=w_qualities,
            ),
            max_size=3,
        ).map(tuple),
        kv_maps=st.lists(
            models(
                wm.StoredKVMaps,
                version=versions,
                alignment_quality=st.one_of(st.none(), alignment_qualities),
            ),
            max_size=3,
        ).map(tuple),
    ),
    "align_kv_cache_request": models(
        p.AlignKVCacheRequest,
        kv_cache=kv_caches(),
        target_model=names,
        w_matrix_version=st.one_of(st.none(), versions),
        reservation_id=reservation_ids,
    ),
    "align_kv_cache_response": models(
        p.AlignKVCacheResponse, aligned_kv_cache=kv_caches(), alignment_quality=alignment_qualities
    ),
    "exchange_memory_request": models(
        p.ExchangeMemoryRequest,
        kv_source=kv_caches(),
        source_model=names,
        target_model=names,
        w_matrix_version=st.one_of(st.none(), versions),
        reservation_id=reservation_ids,
    ),
    "exchange_memory_response": models(
        p.ExchangeMemoryResponse, kv_aligned=kv_caches(), quality=alignment_qualities
    ),
    "align_vector_request": vector_requests(),
    "align_vector_response": vector_responses(),
    "error": models(
        p.ErrorBody,
        code=st.sampled_from(sorted(ERROR_CLASSES)),
        message=st.text(max_size=100),
        resolution=st.text(max_size=100),
        details=json_details,
    ),
}
