"""Quality figures: section 4.3.4's alignment metrics and section 4.3.3's W-matrix metrics."""

from __future__ import annotations

from pydantic import Field

from latentmas_mesh.protocol.base import WireFloat, WireInt, WireModel


class AlignmentQuality(WireModel):
    """Section 4.3.4 / Appendix C `alignment_quality`, measured on data held out from fitting.

    Spec targets: cosine_similarity > 0.90, euclidean_distance < 0.15,
    information_retention > 0.92, confidence > 0.85. Targets are the caller's to enforce.
    """

    cosine_similarity: WireFloat = Field(ge=-1.0, le=1.0)
    euclidean_distance: WireFloat = Field(ge=0.0)
    information_retention: WireFloat = Field(ge=0.0, le=1.0)
    confidence: WireFloat = Field(ge=0.0, le=1.0)


class WMatrixQualityMetrics(WireModel):
    """Section 4.3.3 `qualityMetrics` and Appendix C's generate response `quality_metrics`."""

    expected_quality: WireFloat = Field(ge=0.0, le=1.0)
    information_retention: WireFloat = Field(ge=0.0, le=1.0)
    computational_cost: WireInt | WireFloat = Field(ge=0)  # the spec's example is 32768 (an int)


__all__ = ["AlignmentQuality", "WMatrixQualityMetrics"]
