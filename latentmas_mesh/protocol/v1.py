"""LatentMAS/1.0 `align_vector`, kept working by the v2.0 migration guide."""

from __future__ import annotations

from pydantic import Field, model_validator

from latentmas_mesh.protocol.align import RESERVATION_ID_DESCRIPTION
from latentmas_mesh.protocol.arrays import FloatMatrix, FloatVector, NDArray
from latentmas_mesh.protocol.base import EnvelopeV1, ModelName, WireModel, register_message
from latentmas_mesh.protocol.ledger import EventId
from latentmas_mesh.protocol.quality import AlignmentQuality


@register_message("align_vector_request")
class AlignVectorRequest(EnvelopeV1):
    """`client.align_vector(vector, source, target)`: one vector [d_s] or a batch [n, d_s].

    `reservation_id` (not in v1) pays for a priced call: see AlignKVCacheRequest.
    """

    vector: FloatVector | None = None
    vectors: FloatMatrix | None = None
    source_model: ModelName
    target_model: ModelName
    reservation_id: EventId | None = Field(default=None, description=RESERVATION_ID_DESCRIPTION)

    @model_validator(mode="after")
    def _exactly_one_payload(self) -> AlignVectorRequest:
        _require_exactly_one(self.vector, self.vectors, "vector", "vectors")
        return self


@register_message("align_vector_response")
class AlignVectorResponse(WireModel):
    """The aligned vector [d_t] or batch [n, d_t], matching the request's form."""

    aligned_vector: FloatVector | None = None
    aligned_vectors: FloatMatrix | None = None
    alignment_quality: AlignmentQuality | None = None

    @model_validator(mode="after")
    def _exactly_one_payload(self) -> AlignVectorResponse:
        _require_exactly_one(
            self.aligned_vector, self.aligned_vectors, "aligned_vector", "aligned_vectors"
        )
        return self


def _require_exactly_one(
    single: NDArray | None, batch: NDArray | None, single_name: str, batch_name: str
) -> None:
    """One vector [d] or one batch [n, d], never both and never neither (v1's two call forms)."""
    if (single is None) == (batch is None):
        msg = f"give exactly one of {single_name} ([d]) or {batch_name} ([n, d])"
        raise ValueError(msg)


__all__ = ["AlignVectorRequest", "AlignVectorResponse"]
