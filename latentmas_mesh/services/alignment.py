"""The alignment services' logic (Appendix C, 3.5.3, v1 align_vector), with no socket in sight."""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from latentmas_mesh.alignment import Allocator
from latentmas_mesh.alignment.geometry import geometry_from_registry
from latentmas_mesh.alignment.hub import UnifiedSpace
from latentmas_mesh.alignment.kv import KVAligner, KVGeometry
from latentmas_mesh.alignment.quality import (
    AlignmentQuality,
    QualityThresholds,
    check_quality,
    cycle_consistency_of_mapped,
)
from latentmas_mesh.alignment.wmatrix import WMatrix, fit_w_matrix
from latentmas_mesh.artifacts.anchor_store import AnchorStore
from latentmas_mesh.artifacts.hub_file import HubFile
from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.artifacts.wmatrix_store import WMatrixRecord, WMatrixStore, fit_inputs_digest
from latentmas_mesh.errors import (
    DimensionMismatch,
    InternalError,
    InvalidRequest,
    ModelNotSupported,
    PayloadTooLarge,
    WMatrixNotFound,
)
from latentmas_mesh.log import get_logger
from latentmas_mesh.protocol.align import (
    ALIGN_SERVICE,
    REPREFILL_FALLBACK,
    AlignKVCacheRequest,
    AlignKVCacheResponse,
    ExchangeMemoryRequest,
    ExchangeMemoryResponse,
    require_retention,
)
from latentmas_mesh.protocol.anchors import RegisterAnchorsRequest, RegisterAnchorsResponse
from latentmas_mesh.protocol.base import WireModel
from latentmas_mesh.protocol.kv import KVCache, KVCacheMetadata
from latentmas_mesh.protocol.quality import AlignmentQuality as WireQuality
from latentmas_mesh.protocol.quality import WMatrixQualityMetrics
from latentmas_mesh.protocol.registry import (
    WMATRIX_SERVICE,
    ModelReply,
    ModelRequest,
    ModelsReply,
    ModelsRequest,
)
from latentmas_mesh.protocol.v1 import AlignVectorRequest, AlignVectorResponse
from latentmas_mesh.protocol.wmatrix import (
    STORED_VERSIONS_MAX,
    GenerateWMatrixRequest,
    GenerateWMatrixResponse,
    StoredKVMaps,
    StoredWMatrix,
    WMatrixVersionsReply,
    WMatrixVersionsRequest,
)
from latentmas_mesh.registry import Registry
from latentmas_mesh.services.alignment_settings import REQUEST_BYTES_MAX
from latentmas_mesh.settlement.payments import Payments, Terms

ANCHOR_ROWS_MAX: Final = 1_000_000
# align_vector's cycle check s -> t -> s (a log line, no ground truth needed) is a sample, not a
# per-request cost: the first request of a pair and then every CYCLE_EVERY-th, on at most
# CYCLE_ROWS_MAX of its rows, reusing the forward map's output (one extra map, not two).
CYCLE_EVERY: Final = 64
CYCLE_ROWS_MAX: Final = 64
COMPOSED_MAX: Final = 64  # hub compositions kept, per unified space (oldest dropped first)
PAID_REQUESTS: Final = (AlignKVCacheRequest, ExchangeMemoryRequest, AlignVectorRequest)


@dataclass(frozen=True)
class ServicePolicy:
    """Operator choices: the unified dimension of generated maps and the price of an exchange.

    price_units: integer minor units per paid exchange (0: free, nothing is settled);
    creator, validators: the identities a caller's reservation credits (80% and 5%; the ledger
    keeps 15% for the platform), stated in the error that asks for payment;
    thresholds: when set, a generated map below them is not stored (QUALITY_BELOW_THRESHOLD,
    "Try different method"); the spec's targets are QualityThresholds();
    request_bytes_max: what one align request may hold at once (input, predicted output, working
    arrays); one predicted past it is refused PAYLOAD_TOO_LARGE before anything is allocated.
    """

    unified_dim: int = 128
    price_units: int = 0
    creator: str = "operator"
    validators: tuple[str, ...] = ()
    thresholds: QualityThresholds | None = None
    request_bytes_max: int = REQUEST_BYTES_MAX

    @property
    def terms(self) -> Terms:
        return Terms(self.price_units, self.creator, self.validators)


def _stored_w_matrix(record: WMatrixRecord) -> StoredWMatrix:
    return StoredWMatrix(
        version=record.version,
        method=record.method,
        unified_dimension=record.unified_dimension,
        quality_metrics=WMatrixQualityMetrics(**record.quality_metrics()),
    )


def wire_quality(quality: AlignmentQuality) -> WireQuality:
    """The protocol's alignment_quality (each figure clipped into the wire's ranges)."""
    return WireQuality(
        cosine_similarity=min(max(quality.cosine_similarity, -1.0), 1.0),
        euclidean_distance=max(quality.euclidean_distance, 0.0),
        information_retention=min(max(quality.information_retention, 0.0), 1.0),
        confidence=min(max(quality.confidence, 0.0), 1.0),
    )


EXACT = AlignmentQuality(1.0, 0.0, 1.0, 1.0, 0)  # a same-model exchange is the identity, bit-exact


class AlignmentService:
    """Handlers of `latentmas.wmatrix` and `latentmas.align`: messages in, messages out.

    The worker shells own sockets and processes; this class owns the decisions. `clock` gives
    the aligned caches' generated_at (time is passed in, never read here). `payments` settles
    priced align requests through the ledger (a priced request without it is refused).
    """

    def __init__(
        self,
        *,
        registry: Registry,
        wmatrices: WMatrixStore,
        anchors: AnchorStore,
        kv_maps: KVMapStore,
        clock: Callable[[], dt.datetime],
        policy: ServicePolicy | None = None,
        hub: HubFile | None = None,
        payments: Payments | None = None,
    ) -> None:
        self.registry = registry
        self.wmatrices = wmatrices
        self.anchors = anchors
        self.kv_maps = kv_maps
        self.clock = clock
        self.policy = policy or ServicePolicy()
        self.payments = payments
        self.hub = hub
        self._log = get_logger("alignment")
        self._geometries: dict[str, KVGeometry] = {}
        self._identities: dict[str, KVAligner] = {}
        self._composed: OrderedDict[tuple[str, str], tuple[UnifiedSpace, WMatrix]] = OrderedDict()
        self._cycle_counts: dict[tuple[str, str], int] = {}

    def _model(self, name: str) -> str:
        """Canonical registry name; ModelNotSupported for a name the registry does not know."""
        return self.registry.get(name).name

    # ------------------------------------------------------------------ latentmas.wmatrix

    def handle_wmatrix(self, message: WireModel, identity: str | None) -> WireModel:
        if isinstance(message, GenerateWMatrixRequest):
            return self.generate(message)
        if isinstance(message, RegisterAnchorsRequest):
            return self.register_anchors(message)
        if isinstance(message, ModelsRequest):
            return self.list_models(message)
        if isinstance(message, ModelRequest):
            return ModelReply(model=self.registry.get(message.name).model_dump(mode="json"))
        if isinstance(message, WMatrixVersionsRequest):
            return self.stored_versions(message)
        raise InvalidRequest(
            f"{WMATRIX_SERVICE} does not handle {type(message).__name__}",
            details={"accepted": ["generate_w_matrix_request", "register_anchors_request",
                                  "registry.models_request", "registry.model_request",
                                  "w_matrix_versions_request"]},
        )  # fmt: skip

    def stored_versions(self, request: WMatrixVersionsRequest) -> WMatrixVersionsReply:
        """The pair's stored W-matrices and KV maps with their held-out quality (the newest
        STORED_VERSIONS_MAX of each kind)."""
        source, target = self._model(request.source_model), self._model(request.target_model)
        records = self.wmatrices.records(source, target)[-STORED_VERSIONS_MAX:]
        kv_versions = self.kv_maps.versions(source, target)[-STORED_VERSIONS_MAX:]
        kv_maps = []
        for version in kv_versions:
            aligner, _ = self.kv_maps.get(source, target, version)
            quality = aligner.quality
            kv_maps.append(StoredKVMaps(
                version=version,
                alignment_quality=None if quality is None else wire_quality(quality),
            ))  # fmt: skip
        return WMatrixVersionsReply(
            source_model=source,
            target_model=target,
            w_matrices=tuple(_stored_w_matrix(record) for record in records),
            kv_maps=tuple(kv_maps),
        )

    def list_models(self, request: ModelsRequest) -> ModelsReply:
        """A page of the registry this service loaded (shipped file plus the operator's), so a
        client learns the models of this mesh rather than of its own copy of the file."""
        models = self.registry.models(request.family)
        end = request.offset + request.limit
        page = models[request.offset : end]
        return ModelsReply(
            models=tuple(spec.model_dump(mode="json") for spec in page),
            next_offset=end if end < len(models) else None,
        )

    def register_anchors(self, request: RegisterAnchorsRequest) -> RegisterAnchorsResponse:
        """Store a model's anchor activations (the owner's export; the model never comes here)."""
        model = self._model(request.model)
        if request.activations.shape[0] > ANCHOR_ROWS_MAX:
            raise PayloadTooLarge(
                f"at most {ANCHOR_ROWS_MAX} anchor rows", details={"rows_max": ANCHOR_ROWS_MAX}
            )
        self._chart_in_hub(model, request.anchor_set, request.activations)
        rows, dim, digest = self.anchors.put(model, request.anchor_set, request.activations)
        return RegisterAnchorsResponse(
            model=model, anchor_set=request.anchor_set, rows=rows, dim=dim, content_hash=digest
        )

    def _chart_in_hub(self, model: str, anchor_set: str, activations: npt.ArrayLike) -> None:
        """Give the model its chart in the unified space (section 4.3.1's hub and spokes).

        The first model registered on an anchor set founds the space; later ones are charted
        against it. A model on another anchor set founds a new space (the old one's rows would
        not pair with it).
        """
        if self.hub is None:
            return
        unified_dim = self.policy.unified_dim

        def chart(hub: UnifiedSpace | None) -> UnifiedSpace:
            if hub is None or hub.anchor_set != anchor_set:
                return UnifiedSpace(unified_dim, method="hybrid", anchor_set=anchor_set).fit(
                    {model: activations}
                )
            hub.register(model, activations)
            return hub

        self.hub.update(chart)

    def compose(self, source: str, target: str) -> WMatrix:
        """W(source -> target) through the hub; WMatrixNotFound when either has no chart.

        A composition is measured on the hub's held-out anchors (with a bootstrap) once per
        unified space: it is kept while `HubFile.read` returns the same space, so a request
        served through the hub pays neither the composition nor its measurement again.
        """
        hub = None if self.hub is None else self.hub.read()
        if hub is None:
            raise WMatrixNotFound(
                f"no W-matrix for {source} -> {target} and no unified space to compose through",
                details={"source_model": source, "target_model": target},
            )
        key = (source, target)
        cached = self._composed.get(key)
        if cached is not None and cached[0] is hub:
            self._composed.move_to_end(key)
            return cached[1]
        wmatrix = hub.w_matrix(source, target)
        self._composed[key] = (hub, wmatrix)
        self._composed.move_to_end(key)
        while len(self._composed) > COMPOSED_MAX:
            self._composed.popitem(last=False)
        return wmatrix

    def generate(self, request: GenerateWMatrixRequest) -> GenerateWMatrixResponse:
        """Appendix C.1 Generate W-Matrix: fit on both models' registered anchors, store the new
        version, answer with its held-out quality.

        A map already fitted from the same anchors, method and unified dimension is that
        answer, at once: a second fit would read the same numbers (and a retried request must
        not store a second version).
        """
        source, target = self._model(request.source_model), self._model(request.target_model)
        (source_set, source_hash), (target_set, target_hash) = (
            self._anchors_described(source), self._anchors_described(target),
        )  # fmt: skip
        unified_dim = self.policy.unified_dim
        fit_inputs = fit_inputs_digest(
            request.method, unified_dim,
            (source, source_set, source_hash), (target, target_set, target_hash),
        )  # fmt: skip
        record = self.wmatrices.fitted_from(source, target, fit_inputs)
        if record is None:
            record = self._fit(request, source, target, fit_inputs)
        return GenerateWMatrixResponse(
            version=record.version,
            unified_dimension=record.unified_dimension,
            quality_metrics=WMatrixQualityMetrics(**record.quality_metrics()),
        )

    def _fit(
        self, request: GenerateWMatrixRequest, source: str, target: str, fit_inputs: str
    ) -> WMatrixRecord:
        source_set, x = self._anchors_of(source)
        target_set, y = self._anchors_of(target)
        if source_set != target_set or x.shape[0] != y.shape[0]:
            raise InvalidRequest(
                "the two models registered activations on different anchor rows",
                details={"source": [source_set, x.shape[0]], "target": [target_set, y.shape[0]]},
            )
        wmatrix = fit_w_matrix(x, y, method=request.method, unified_dim=self.policy.unified_dim)
        if self.policy.thresholds is not None:
            check_quality(wmatrix.quality, self.policy.thresholds, method=request.method)
        return self.wmatrices.put(
            wmatrix, source_model=source, target_model=target, fit_inputs=fit_inputs
        )

    def _anchors_described(self, model: str) -> tuple[str, str]:
        """(anchor set, content hash) of the model's registered anchors, with `_anchors_of`'s
        refusals (a closed model's says why it has none)."""
        try:
            return self.anchors.describe(model)
        except ModelNotSupported:
            self._anchors_of(model)  # raises the refusal that names the reason
            raise

    def _anchors_of(self, model: str) -> tuple[str, npt.NDArray[np.float32]]:
        """The model's registered anchor activations; for a closed model with none, the
        refusal says why none can come (the spec's own gpt-4 example)."""
        try:
            return self.anchors.get(model)
        except ModelNotSupported as missing:
            spec = self.registry.get(model)
            if spec.open_weights:
                raise
            msg = (
                f"{model} is a closed model: it exports no activations, and none were "
                "registered for it, so no W-matrix can be fitted on its side"
            )
            details = {**missing.details, "open_weights": False, "reason": spec.kv_export_note}
            raise ModelNotSupported(msg, details=details) from missing

    # ------------------------------------------------------------------ latentmas.align

    def handle_align(
        self,
        message: WireModel,
        identity: str | None,
        request_id: str,
        *,
        allocate: Allocator = np.empty,
    ) -> WireModel:
        """Answer an align request; a priced one only once its reservation is posted.

        Spec 7.4 pay-then-deliver: the caller's reservation is checked before the work, posted
        (and confirmed by the ledger) after it and before the reply; work that fails voids it.
        `allocate` is where aligned caches are written (a worker's shared-memory segments).
        """
        if not isinstance(message, PAID_REQUESTS) or self.policy.price_units <= 0:
            return self._align(message, request_id, allocate)
        payments = self.payments
        if payments is None:  # never deliver unpaid: a configuration error, said plainly
            msg = f"{ALIGN_SERVICE} charges for exchanges but has no ledger connection"
            raise InternalError(msg, details={"price_units": self.policy.price_units})
        payment = payments.open(self.policy.terms, message.reservation_id, identity, request_id)
        try:
            reply = self._align(message, request_id, allocate)
        except Exception:  # nothing delivered: the payer gets the held funds back
            payments.void(payment)
            raise
        payments.post(payment)
        return reply

    def _align(self, message: WireModel, request_id: str, allocate: Allocator) -> WireModel:
        if isinstance(message, AlignKVCacheRequest):
            cache, quality = self._align_cache(
                message.kv_cache, source_name=message.kv_cache.source_model,
                target_name=message.target_model, version=message.w_matrix_version,
                min_quality=message.min_quality, allocate=allocate,
            )  # fmt: skip
            return AlignKVCacheResponse(aligned_kv_cache=cache, alignment_quality=quality)
        if isinstance(message, ExchangeMemoryRequest):
            if self._model(message.kv_source.source_model) != self._model(message.source_model):
                raise InvalidRequest(
                    "kv_source.source_model and source_model name different models",
                    details={"kv_source": message.kv_source.source_model,
                             "source_model": message.source_model},
                )  # fmt: skip
            cache, quality = self._align_cache(
                message.kv_source, source_name=message.source_model,
                target_name=message.target_model, version=message.w_matrix_version,
                min_quality=message.min_quality, allocate=allocate,
            )  # fmt: skip
            return ExchangeMemoryResponse(kv_aligned=cache, quality=quality)
        if isinstance(message, AlignVectorRequest):
            return self.align_vector(message, request_id)
        raise InvalidRequest(
            f"{ALIGN_SERVICE} does not handle {type(message).__name__}",
            details={"accepted": ["align_kv_cache_request", "exchange_memory_request",
                                  "align_vector_request"]},
        )  # fmt: skip

    def _align_cache(
        self,
        cache: KVCache,
        *,
        source_name: str,
        target_name: str,
        version: str | None,
        min_quality: float | None = None,
        allocate: Allocator = np.empty,
    ) -> tuple[KVCache, WireQuality]:
        """Section 3.5.3 step 2: the cache in the target's space, with the maps' quality.

        The maps' quality is known before they run, so maps below the caller's `min_quality`
        are refused here, before any work (a priced exchange is then voided, not charged).
        """
        source, target = self._model(source_name), self._model(target_name)
        source_geometry = self._geometry(source)
        self._geometry(target)  # closed / MLA targets are refused here
        seq = source_geometry.check_cache(cache.keys, cache.values)
        if source == target and version is None:
            aligner, quality, used = self._identity(source), EXACT, "identity"
        else:
            aligner, used = self._stored_maps(source, target, version)
            self._check_geometries(aligner, source, target, used)
            if aligner.quality is None:
                raise WMatrixNotFound(f"KV maps {used} carry no measured quality", details={})
            quality = aligner.quality
        measured = wire_quality(quality)
        require_retention(measured, min_quality, maps=f"{source} -> {target} {used}")
        predicted = aligner.align_bytes(seq, cache.keys.dtype)
        self._admit(f"aligning to {target}", cache.nbytes, predicted.output, predicted.working)
        positions = cache.position_encodings
        keys, values = aligner.align(
            cache.keys,
            cache.values,
            positions=None if positions is None else positions,
            allocate=allocate,
        )
        aligned = KVCache(
            source_model=target,
            keys=keys,
            values=values,
            position_encodings=positions,
            metadata=KVCacheMetadata(
                sequence_length=cache.metadata.sequence_length,
                context_description=f"aligned from {source} ({used}): "
                + cache.metadata.context_description[:1024],
                token_count=cache.metadata.token_count,
                generated_at=self.clock(),
            ),
        )
        return aligned, measured

    def _stored_maps(self, source: str, target: str, version: str | None) -> tuple[KVAligner, str]:
        """The pair's stored KV maps (newest, or `version`); the refusal for none names C.2's
        fallback, since no hub composition can stand in for KV maps."""
        try:
            return self.kv_maps.get(source, target, version)
        except WMatrixNotFound as missing:
            details = {**missing.details, "fallback": REPREFILL_FALLBACK}
            raise WMatrixNotFound(f"{missing.message}; fall back to {REPREFILL_FALLBACK}",
                                  details=details) from missing  # fmt: skip

    def _check_geometries(self, aligner: KVAligner, source: str, target: str, used: str) -> None:
        """Fail closed: maps fitted for other geometries (another revision of a model, an
        edited registry) are refused, never applied to caches they do not describe."""
        for side, model, fitted in (("source", source, aligner.source),
                                    ("target", target, aligner.target)):  # fmt: skip
            if fitted != self._geometry(model):
                msg = (
                    f"KV maps {source} -> {target} {used} were fitted for another {side} "
                    f"geometry than the registry's {model}: regenerate them"
                )
                details = {"side": side, "model": model, "version": used}
                raise DimensionMismatch(msg, details=details)

    def _geometry(self, model: str) -> KVGeometry:
        """The registry geometry of canonical `model`, built once (the registry is fixed for the
        service's life); a model that cannot export a cache raises every time."""
        geometry = self._geometries.get(model)
        if geometry is None:
            geometry = self._geometries[model] = geometry_from_registry(model, self.registry)
        return geometry

    def _identity(self, model: str) -> KVAligner:
        """The same-model aligner of `model` (identity head maps), built once."""
        aligner = self._identities.get(model)
        if aligner is None:
            aligner = self._identities[model] = KVAligner.identity(self._geometry(model))
        return aligner

    def align_vector(self, request: AlignVectorRequest, request_id: str) -> AlignVectorResponse:
        """v1 align_vector through the newest stored map of the pair; with none stored, C.2's
        fallback: another method, then composition through the unified-space hub."""
        source, target = self._model(request.source_model), self._model(request.target_model)
        single = request.vector is not None
        rows = request.vector[None, :] if request.vector is not None else request.vectors
        assert rows is not None  # the request model guarantees exactly one payload
        resolved = self.wmatrices.resolve(source, target, compose=self.compose)
        output, working = vector_bytes(rows, resolved.wmatrix.n_features_out_)
        self._admit(f"mapping to {target}", rows.nbytes, output, working)
        mapped = resolved.wmatrix.transform(rows)
        aligned = mapped.astype(np.float32)
        self._log_cycle(source, target, rows, mapped, request_id)
        quality = wire_quality(resolved.wmatrix.quality)
        if single:
            return AlignVectorResponse(aligned_vector=aligned[0], alignment_quality=quality)
        return AlignVectorResponse(aligned_vectors=aligned, alignment_quality=quality)

    def _admit(self, what: str, input_bytes: int, output: int, working: int) -> None:
        """PayloadTooLarge unless the request's input, predicted output and working arrays fit
        policy.request_bytes_max together: called before any of them is allocated."""
        predicted = input_bytes + output + working
        limit = self.policy.request_bytes_max
        if predicted > limit:
            raise PayloadTooLarge(
                f"{what} would hold {predicted} bytes at once; this worker allows {limit}",
                details={"predicted_bytes": predicted, "bytes_max": limit,
                         "input_bytes": input_bytes, "output_bytes": output,
                         "working_bytes": working},
            )  # fmt: skip

    def _log_cycle(
        self,
        source: str,
        target: str,
        rows: npt.NDArray[Any],
        mapped: npt.NDArray[Any],
        request_id: str,
    ) -> None:
        """The no-ground-truth check s -> t -> s, logged when the reverse map exists.

        Sampled (see CYCLE_EVERY): the first request of the pair and every CYCLE_EVERY-th after
        it, on its first CYCLE_ROWS_MAX rows; `mapped` (the forward output of `rows`) is reused,
        so a sampled request pays one reverse map of at most CYCLE_ROWS_MAX rows.
        """
        pair = (source, target)
        count = self._cycle_counts.get(pair, 0)
        self._cycle_counts[pair] = count + 1
        if count % CYCLE_EVERY:
            return
        sample = slice(0, CYCLE_ROWS_MAX)
        try:
            backward = self.wmatrices.resolve(target, source, compose=self.compose).wmatrix
            cycle = cycle_consistency_of_mapped(backward, rows[sample], mapped[sample])
        except (WMatrixNotFound, DimensionMismatch):
            return
        self._log.info("cycle_consistency", request_id=request_id, sampled_every=CYCLE_EVERY,
                       rows=cycle.rows, cosine_similarity=round(cycle.cosine_similarity, 6),
                       euclidean_distance=round(cycle.euclidean_distance, 6))  # fmt: skip


def vector_bytes(rows: npt.NDArray[Any], target_dim: int) -> tuple[int, int]:
    """(output, working) bytes of align_vector on `rows` [n, d_s] (the sampled cycle check of
    at most CYCLE_ROWS_MAX rows aside). WMatrix.transform works in float64: the rows cast (unless
    float64 already), the product, the product plus bias; the float32 answer is cast from that
    result after the cast rows are gone, so the peak is the float64 step's."""
    count, width = rows.shape
    cast = 0 if rows.dtype == np.float64 else 8 * count * width
    return 4 * count * target_dim, cast + 12 * count * target_dim


__all__ = [
    "ALIGN_SERVICE",
    "ANCHOR_ROWS_MAX",
    "WMATRIX_SERVICE",
    "AlignmentService",
    "ServicePolicy",
    "vector_bytes",
    "wire_quality",
]
