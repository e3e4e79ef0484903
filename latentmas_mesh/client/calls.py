"""Every SDK call as data: the service, the request, and how its reply is read and checked.

The blocking and the asyncio client, and the HTTP gateway, only send a `Call` and hand the reply
to `Call.read`, so what a call means is written once, here, with no socket in sight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeAlias, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from latentmas_mesh.client._kv import KVInput, as_kv_cache
from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.protocol.align import (
    ALIGN_SERVICE,
    AlignKVCacheRequest,
    AlignKVCacheResponse,
    ExchangeMemoryRequest,
    ExchangeMemoryResponse,
    require_retention,
)
from latentmas_mesh.protocol.anchors import RegisterAnchorsRequest, RegisterAnchorsResponse
from latentmas_mesh.protocol.base import WireModel, validate_message
from latentmas_mesh.protocol.registry import (
    WMATRIX_SERVICE,
    ModelEntry,
    ModelReply,
    ModelRequest,
    ModelsReply,
    ModelsRequest,
)
from latentmas_mesh.protocol.v1 import AlignVectorRequest, AlignVectorResponse
from latentmas_mesh.protocol.wmatrix import (
    GenerateWMatrixRequest,
    GenerateWMatrixResponse,
    TransformationRules,
    WMatrixMethod,
    WMatrixStandard,
    WMatrixVersionsReply,
    WMatrixVersionsRequest,
)
from latentmas_mesh.registry import ModelSpec

MODEL_PAGES_MAX: Final = 1_024
"""Registry pages one `models()` reads at most (64 entries each: far beyond any registry)."""

VectorInput: TypeAlias = np.ndarray[Any, Any] | Sequence[float] | Sequence[Sequence[float]]
"""A vector [d] or a batch [n, d]: a float numpy array, or numbers (taken as float32)."""
T_co = TypeVar("T_co", covariant=True)
R = TypeVar("R", bound=BaseModel)
W = TypeVar("W", bound=WireModel)


@dataclass(frozen=True, slots=True)
class Call(Generic[T_co]):
    """One request to `service` and the reading of its reply into what the SDK returns
    (covariant: a call answering a subtype stands in for one answering its base)."""

    service: str
    message: BaseModel
    read: Callable[[BaseModel], T_co]


@dataclass(frozen=True, slots=True)
class ModelsPage:
    """Registry entries of one reply, and the call for the next page (None after the last)."""

    models: tuple[ModelSpec, ...]
    next: Call[ModelsPage] | None


def expect(reply: BaseModel, reply_type: type[R]) -> R:
    """`reply` if it is a `reply_type`; a service answering something else is refused."""
    if not isinstance(reply, reply_type):
        msg = f"expected {reply_type.__name__}, got {type(reply).__name__}"
        raise InvalidRequest(msg, details={"expected": reply_type.__name__})
    return reply


def build(cls: type[W], **fields: object) -> W:
    """The request `cls` of the call's arguments; arguments it refuses raise InvalidRequest
    (with the schema's summary) before anything is sent."""
    return validate_message(cls, fields)


def align_vector(
    vector: VectorInput, source: str, target: str, *, reservation_id: str | None
) -> Call[AlignVectorResponse]:
    """v1 `align_vector`: one vector [d_s] or a batch [n, d_s], in a LatentMAS/1.0 envelope
    (a list of numbers is taken as float32, as v1 callers send them)."""
    try:
        array = vector if isinstance(vector, np.ndarray) else np.asarray(vector, np.float32)
    except (TypeError, ValueError) as exc:  # ragged lists, text
        raise InvalidRequest(f"vector is not numbers of one shape: {exc}"[:256]) from exc
    batch = array.ndim == 2
    request = build(
        AlignVectorRequest,
        vector=None if batch else array,
        vectors=array if batch else None,
        source_model=source,
        target_model=target,
        reservation_id=reservation_id,
    )
    return vector_alignment(request)


def vector_alignment(request: AlignVectorRequest) -> Call[AlignVectorResponse]:
    """The call of a built v1 request (the gateway's, parsed from HTTP)."""
    return Call(ALIGN_SERVICE, request, lambda reply: expect(reply, AlignVectorResponse))


def generate_w_matrix(source: str, target: str, method: WMatrixMethod) -> Call[WMatrixStandard]:
    """Appendix C.1 Generate W-Matrix, answered as section 4.3.3's standard: the new version with
    its measured quality (the worker keeps the matrix; `transformation_rules` stays empty)."""
    request = build(GenerateWMatrixRequest, source_model=source, target_model=target, method=method)

    def read(reply: BaseModel) -> WMatrixStandard:
        generated = expect(reply, GenerateWMatrixResponse)
        return WMatrixStandard(
            version=generated.version,
            source_model=source,
            target_model=target,
            unified_dimension=generated.unified_dimension,
            method=method,
            transformation_rules=TransformationRules(),
            quality_metrics=generated.quality_metrics,
        )

    return Call(WMATRIX_SERVICE, request, read)


def w_matrix_generation(request: GenerateWMatrixRequest) -> Call[GenerateWMatrixResponse]:
    """The call of a built generate request, answered as Appendix C.1's response body."""
    return Call(WMATRIX_SERVICE, request, lambda reply: expect(reply, GenerateWMatrixResponse))


def register_anchors(
    model: str, anchor_set: str, activations: np.ndarray[Any, Any]
) -> Call[RegisterAnchorsResponse]:
    """A model owner's activations [n, d] on the rows of `anchor_set` (the model itself never
    reaches the mesh); registering again replaces them."""
    request = build(RegisterAnchorsRequest, model=model, anchor_set=anchor_set,
                    activations=activations)  # fmt: skip
    return Call(WMATRIX_SERVICE, request, lambda reply: expect(reply, RegisterAnchorsResponse))


def w_matrix_versions(source: str, target: str) -> Call[WMatrixVersionsReply]:
    """The pair's stored W-matrices and KV maps with their held-out quality."""
    request = build(WMatrixVersionsRequest, source_model=source, target_model=target)
    return Call(WMATRIX_SERVICE, request, lambda reply: expect(reply, WMatrixVersionsReply))


def align_kv_cache(
    kv_cache: KVInput,
    source: str,
    target: str,
    *,
    w_matrix_version: str | None,
    min_quality: float | None,
    reservation_id: str | None,
) -> Call[AlignKVCacheResponse]:
    """Appendix C.1 Align KV-Cache; the reply's quality is checked against `min_quality` again."""
    request = build(
        AlignKVCacheRequest,
        kv_cache=as_kv_cache(kv_cache, source),
        target_model=target,
        w_matrix_version=w_matrix_version,
        min_quality=min_quality,
        reservation_id=reservation_id,
    )
    return kv_cache_alignment(request)


def kv_cache_alignment(request: AlignKVCacheRequest) -> Call[AlignKVCacheResponse]:
    """The call of a built Align KV-Cache request; its reply is held to `min_quality` again."""
    maps = _maps_name(request.kv_cache.source_model, request.target_model, request.w_matrix_version)

    def read(reply: BaseModel) -> AlignKVCacheResponse:
        aligned = expect(reply, AlignKVCacheResponse)
        require_retention(aligned.alignment_quality, request.min_quality, maps=maps)
        return aligned

    return Call(ALIGN_SERVICE, request, read)


def exchange_memory(
    kv_source: KVInput,
    source: str,
    target: str,
    *,
    w_matrix_version: str | None,
    min_quality: float | None,
    reservation_id: str | None,
) -> Call[ExchangeMemoryResponse]:
    """Section 3.5.3 EXCHANGE_MEMORY (kv_source, M_source, M_target, W) -> (kv_aligned,
    quality); the reply's quality is checked against `min_quality` again."""
    request = build(
        ExchangeMemoryRequest,
        kv_source=as_kv_cache(kv_source, source),
        source_model=source,
        target_model=target,
        w_matrix_version=w_matrix_version,
        min_quality=min_quality,
        reservation_id=reservation_id,
    )
    return memory_exchange(request)


def memory_exchange(request: ExchangeMemoryRequest) -> Call[ExchangeMemoryResponse]:
    """The call of a built EXCHANGE_MEMORY request; its reply is held to `min_quality` again."""
    maps = _maps_name(request.source_model, request.target_model, request.w_matrix_version)

    def read(reply: BaseModel) -> ExchangeMemoryResponse:
        exchanged = expect(reply, ExchangeMemoryResponse)
        require_retention(exchanged.quality, request.min_quality, maps=maps)
        return exchanged

    return Call(ALIGN_SERVICE, request, read)


def models_page(family: str | None, offset: int = 0) -> Call[ModelsPage]:
    """One page of the mesh's registry from `offset`; its reading names the next page's call."""

    def read(reply: BaseModel) -> ModelsPage:
        page = expect(reply, ModelsReply)
        following = page.next_offset
        if following is not None and following <= offset:  # a page must move forward
            raise InvalidRequest("the registry's next page does not follow this one", details={})
        return ModelsPage(
            models=tuple(model_spec(entry) for entry in page.models),
            next=None if following is None else models_page(family, following),
        )

    request = build(ModelsRequest, family=family, offset=offset)
    return Call(WMATRIX_SERVICE, request, read)


def following(page: ModelsPage, pages_read: int) -> Call[ModelsPage] | None:
    """The call for the page after `page` (None after the last), within MODEL_PAGES_MAX."""
    if page.next is not None and pages_read >= MODEL_PAGES_MAX:
        msg = f"the mesh's registry runs past {MODEL_PAGES_MAX} pages"
        raise InvalidRequest(msg, details={"pages_max": MODEL_PAGES_MAX})
    return page.next


def model(name: str) -> Call[ModelSpec]:
    """One registry entry by name or alias."""
    request = build(ModelRequest, name=name)
    return Call(WMATRIX_SERVICE, request, lambda reply: model_spec(expect(reply, ModelReply).model))


def model_spec(entry: ModelEntry) -> ModelSpec:
    """A registry entry from the wire as the registry's own type."""
    try:
        return ModelSpec.model_validate(entry)
    except ValidationError as exc:
        name = str(entry.get("name", "?"))[:128]
        msg = f"the mesh's registry entry {name!r} does not match this SDK's ModelSpec"
        raise InvalidRequest(msg, details={"model": name, "errors": exc.error_count()}) from exc


def _maps_name(source: str, target: str, version: str | None) -> str:
    return f"{source} -> {target} {version or '(newest)'}"


__all__ = [
    "MODEL_PAGES_MAX",
    "Call",
    "ModelsPage",
    "VectorInput",
    "align_kv_cache",
    "align_vector",
    "build",
    "exchange_memory",
    "expect",
    "following",
    "generate_w_matrix",
    "kv_cache_alignment",
    "memory_exchange",
    "model",
    "model_spec",
    "models_page",
    "register_anchors",
    "vector_alignment",
    "w_matrix_generation",
    "w_matrix_versions",
]
