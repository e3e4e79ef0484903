"""The error catalogue: stable codes, the spec's resolutions, one wire shape."""

from __future__ import annotations

import pytest

from latentmas_mesh.errors import (
    ERROR_CLASSES,
    RESOLUTIONS,
    ErrorCode,
    ProtocolError,
    QualityBelowThreshold,
    error_from_wire,
)


def test_spec_codes_carry_the_spec_resolution_text():
    """Appendix C.2's four codes keep the spec's resolution text word for word."""
    expected = {
        "W_MATRIX_NOT_FOUND": "Use fallback method",
        "DIMENSION_MISMATCH": "Regenerate W-Matrix",
        "QUALITY_BELOW_THRESHOLD": "Try different method",
        "MODEL_NOT_SUPPORTED": "Request model addition",
    }

    assert expected == {code: RESOLUTIONS[ErrorCode(code)] for code in expected}


def test_every_code_has_one_class_and_a_resolution():
    """No code is left without an exception class or a resolution."""
    assert set(ErrorCode) == set(ERROR_CLASSES) == set(RESOLUTIONS)
    assert len(set(ERROR_CLASSES.values())) == len(ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_wire_round_trip_keeps_type_message_and_details(code: ErrorCode):
    """An error rebuilt from its wire shape is the same type with the same content."""
    original = ERROR_CLASSES[code]("something went wrong", details={"measured": 0.5})

    rebuilt = error_from_wire(original.to_wire())

    assert type(original) is type(rebuilt)
    assert original.message == rebuilt.message
    assert original.details == rebuilt.details
    assert rebuilt.to_wire()["resolution"] == RESOLUTIONS[code]


def test_unknown_code_from_a_peer_becomes_internal():
    """A code this version does not know is not trusted; it maps to INTERNAL."""
    rebuilt = error_from_wire({"code": "NOT_A_CODE", "message": "x", "details": "not a dict"})

    assert ErrorCode.INTERNAL == rebuilt.code
    assert {} == rebuilt.details


def test_errors_are_exceptions_with_their_code():
    """Raising and catching by base class keeps the code."""
    with pytest.raises(ProtocolError) as caught:
        raise QualityBelowThreshold("cosine 0.5 < 0.9", details={"cosine_similarity": 0.5})

    assert ErrorCode.QUALITY_BELOW_THRESHOLD == caught.value.code
