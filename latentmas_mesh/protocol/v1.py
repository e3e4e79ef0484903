"""LatentMAS/1.0 `align_vector`, kept working by the v2.0 migration guide."""

from __future__ import annotations

from pydantic import model_validator

from latentmas_mesh.protocol.arrays import FloatMatrix, FloatVector
from latentmas_mesh.protocol.base import EnvelopeV1, ModelName, WireModel, register_message
from latentmas_mesh.protocol.quality import AlignmentQuality


@register_message("align_vector_request")
class AlignVectorRequest(EnvelopeV1):
    """`client.align_vector(vector, source, target)`: one vector [d_s] or a batch [n, d_s]."""

    vector: FloatVector | None = None
    vectors: FloatMatrix | None = None
    source_model: ModelName
    target_model: ModelName

    @model_validator(mode="after")
    def _exactly_one_payload(self) -> AlignVectorRequest:
        if (self.vector is None) == (self.vectors is None):
            msg = "give exactly one of vector ([d]) or vectors ([n, d])"
            raise ValueError(msg)
        return self


@register_message("align_vector_response")
class AlignVectorResponse(WireModel):
    """The aligned vector [d_t] or batch [n, d_t], matching the request's form."""

    aligned_vector: FloatVector | None = None
    aligned_vectors: FloatMatrix | None = None
    alignment_quality: AlignmentQuality | None = None

    @model_validator(mode="after")
    def _exactly_one_payload(self) -> AlignVectorResponse:
        if (self.aligned_vector is None) == (self.aligned_vectors is None):
            msg = "give exactly one of aligned_vector ([d]) or aligned_vectors ([n, d])"
            raise ValueError(msg)
        return self


__all__ = ["AlignVectorRequest", "AlignVectorResponse"]
