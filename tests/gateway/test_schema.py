"""Schemathesis against the gateway's own OpenAPI document: requests generated from every
path's schema (valid and invalid) reach a running gateway and mesh; none gets a 5xx, every error
carries the one error body with a protocol code, and every status is one the path documents."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from latentmas_mesh.errors import ErrorCode

pytestmark = pytest.mark.slow
CODES = {code.value for code in ErrorCode}
EXAMPLES = 15
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@pytest.fixture(scope="module")
def operations(site):
    schema = schemathesis.openapi.from_url(f"{site.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_every_path_is_covered(operations):
    """The document names every endpoint (so the fuzzing below reaches all of them)."""
    paths = {operation.path for operation in operations}

    assert {
        "/api/latentmas/w-matrix/generate", "/api/latentmas/kv-cache/align",
        "/api/latentmas/memory/exchange", "/api/latentmas/v1/vectors/align",
        "/api/latentmas/models", "/api/latentmas/models/{name}",
        "/api/latentmas/w-matrix/{source}/{target}", "/api/latentmas/ledger/balance",
        "/api/latentmas/ledger/statement", "/api/latentmas/ledger/deposit",
        "/api/latentmas/jobs/{job_id}", "/healthz", "/metrics",
        "/api/latentmas/markets/{market}/listings",
        "/api/latentmas/markets/{market}/listings/search",
        "/api/latentmas/markets/{market}/listings/{listing_id}",
        "/api/latentmas/markets/{market}/listings/{listing_id}/quote",
        "/api/latentmas/markets/{market}/listings/{listing_id}/use",
        "/api/latentmas/markets/{market}/listings/{listing_id}/attestations",
        "/api/latentmas/memory/long-term", "/api/latentmas/memory/long-term/{memory_id}",
    } <= paths  # fmt: skip


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.value)
def test_no_request_breaks_the_gateway(site, operations, mode):
    token = site.agents["alice"].token
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def check(case) -> None:
            response = case.call(base_url=site.url, headers={"authorization": f"Bearer {token}"})
            statuses.setdefault(case.operation.path, set()).add(response.status_code)
            where = f"{case.method} {case.formatted_path} -> {response.status_code}"
            assert response.status_code < 500, f"{where}: {response.text[:300]}"
            documented = {str(key) for key in case.operation.definition.raw["responses"]}
            assert str(response.status_code) in documented, f"{where} undocumented"
            if response.status_code >= 400:
                body = response.json()
                assert body["code"] in CODES, f"{where}: {body}"
                assert {"message", "resolution", "details"} <= set(body), f"{where}: {body}"

        try:
            check()
        except AssertionError as failure:
            failures.append(str(failure)[:600])
        except Unsatisfiable:  # nothing to make invalid (a path without parameters or body)
            assert mode is schemathesis.GenerationMode.NEGATIVE

    assert [] == failures
    seen = set().union(*statuses.values())
    print({path: sorted(codes) for path, codes in statuses.items()})
    assert any(status < 300 for status in seen)  # requests did reach the mesh and succeed
    assert any(400 <= status < 500 for status in seen)
