"""A message type registered for these tests only (a note with an array)."""

from __future__ import annotations

from latentmas_mesh.protocol import FloatVector, WireModel, register_message


@register_message("tests.broker.note")
class Note(WireModel):
    """Text plus a float vector, so calls exercise an array frame."""

    text: str
    values: FloatVector
