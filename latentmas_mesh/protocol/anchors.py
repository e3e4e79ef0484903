"""Anchor registration for `latentmas.wmatrix`: a model's activations on the shared anchor rows."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field

from latentmas_mesh.protocol.arrays import FloatMatrix
from latentmas_mesh.protocol.base import EnvelopeV2, ModelName, WireModel, register_message

ANCHOR_SET_CHARS_MAX: Final = 128
# Names an anchor corpus and its row order (e.g. the shipped corpus's content hash); only
# activations registered under the same anchor set are row-paired and can be fitted together.
AnchorSet = Annotated[str, Field(pattern=r"^[A-Za-z0-9:._-]{1,128}$")]


@register_message("register_anchors_request")
class RegisterAnchorsRequest(EnvelopeV2):
    """A model owner registers activations [n, d] of `model` on the anchor rows of `anchor_set`.

    The server never needs the model itself (issue 6). Registering again replaces the rows.
    """

    model: ModelName
    anchor_set: AnchorSet
    activations: FloatMatrix


@register_message("register_anchors_response")
class RegisterAnchorsResponse(WireModel):
    """What was stored: rows, width and the content hash of the stored activations."""

    model: ModelName
    anchor_set: AnchorSet
    rows: int = Field(ge=0)
    dim: int = Field(ge=0)
    content_hash: str


__all__ = ["RegisterAnchorsRequest", "RegisterAnchorsResponse"]
