"""The mesh's model registry (Appendix D) as the workers loaded it, asked of `latentmas.wmatrix`.

A worker's registry is the shipped file with the operator's file merged over it
(`LATENTMAS_REGISTRY_PATH`), so only the mesh can say which models it knows: a client's own copy
may lack the operator's additions. Entries travel as the registry file writes them
(`registry.ModelSpec` in JSON form): that schema has one home, `registry/`, which this floor
does not import, and the SDK validates each entry back into a `ModelSpec`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import Field, Strict

from latentmas_mesh.protocol.base import ModelName, WireModel, WireStr, register_message

WMATRIX_SERVICE: Final = "latentmas.wmatrix"
"""The service that answers these messages (and Appendix C.1's Generate W-Matrix)."""
MODELS_PER_REPLY_MAX: Final = 64
"""Entries in one reply (about 1 KB each): a page stays far below the codec's header limit."""
FAMILY_CHARS_MAX: Final = 128

ModelEntry = dict[str, Any]
"""One registry entry, `registry.ModelSpec.model_dump(mode="json")`."""


@register_message("registry.models_request")
class ModelsRequest(WireModel):
    """A page of the registry's models in file order, of one family when `family` is given
    (slug or display name, any case; an unknown family has no models)."""

    family: WireStr | None = Field(default=None, min_length=1, max_length=FAMILY_CHARS_MAX)
    offset: Annotated[int, Strict(), Field(ge=0)] = 0
    limit: Annotated[int, Strict(), Field(ge=1, le=MODELS_PER_REPLY_MAX)] = MODELS_PER_REPLY_MAX


@register_message("registry.models_reply")
class ModelsReply(WireModel):
    """Entries from the request's offset; pass `next_offset` as `offset` for the next page
    (None: this was the last)."""

    models: Annotated[tuple[ModelEntry, ...], Field(max_length=MODELS_PER_REPLY_MAX)]
    next_offset: Annotated[int, Strict(), Field(ge=1)] | None


@register_message("registry.model_request")
class ModelRequest(WireModel):
    """One model by canonical name or alias (any case); unknown: MODEL_NOT_SUPPORTED with the
    closest known names in details["suggestions"]."""

    name: ModelName


@register_message("registry.model_reply")
class ModelReply(WireModel):
    """The registry entry of the model asked for (its canonical name in `model["name"]`)."""

    model: ModelEntry


__all__ = [
    "MODELS_PER_REPLY_MAX",
    "WMATRIX_SERVICE",
    "ModelEntry",
    "ModelReply",
    "ModelRequest",
    "ModelsReply",
    "ModelsRequest",
]
