"""Pytest fixtures for users' integration tests against a real local mesh on loopback."""

# Enable them with `pytest_plugins = ["latentmas_mesh.testing.fixtures"]` in a conftest.py, then:
#
# @pytest.mark.mesh(workers={"echo": 2})
# def test_echo(local_mesh):
# with local_mesh.transport() as transport:
# assert [b"hi"] == [f.bytes for f in transport.request("latentmas.echo", [b"hi"])]

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from latentmas_mesh.testing.mesh import LocalMesh

DEFAULT_WORKERS = {"echo": 1}


def pytest_configure(config: pytest.Config) -> None:
    """Register the `mesh` marker (workers=..., heartbeat_ms=...)."""
    config.addinivalue_line(
        "markers", "mesh(workers=None, heartbeat_ms=500): options of the local_mesh fixture"
    )


@pytest.fixture
def local_mesh(request: pytest.FixtureRequest) -> Iterator[LocalMesh]:
    """A started LocalMesh (broker + worker processes), stopped after the test."""
    marker = request.node.get_closest_marker("mesh")
    options = dict(marker.kwargs) if marker else {}
    workers = options.pop("workers", None) or DEFAULT_WORKERS
    with LocalMesh(workers, **options) as mesh:
        yield mesh


@pytest.fixture
def local_mesh_factory() -> Iterator[Callable[..., LocalMesh]]:
    """Build and start meshes inside a test; every one is stopped after it."""
    meshes: list[LocalMesh] = []

    def make(workers: dict[str, int] | None = None, **options: int) -> LocalMesh:
        mesh = LocalMesh(workers or DEFAULT_WORKERS, **options)  # type: ignore[arg-type]
        meshes.append(mesh)
        return mesh.start()

    yield make
    for mesh in meshes:
        mesh.stop()


__all__ = ["local_mesh", "local_mesh_factory", "pytest_configure"]
