"""CURVE + ZAP: only allowed keys get through, and workers learn the client's identity."""

from __future__ import annotations

import pytest

from latentmas_mesh.errors import Timeout
from latentmas_mesh.transport import create_key_pair, public_key_of

from .conftest import InProcessMesh

SERVICE = "secure.whoami"


def whoami(body, context):
    """Replies with the identity the worker was given for the caller."""
    return [(context.identity or "anonymous").encode()]


@pytest.fixture
def keys(tmp_path):
    """Key pairs for the broker, an allowed client, a worker allowed SERVICE and a stranger."""
    made = {}
    for name, folder in [
        ("broker", "broker"),
        ("client", "clients"),
        ("worker", f"workers/{SERVICE}"),
        ("stranger", "strangers"),
    ]:
        made[name] = create_key_pair(tmp_path / folder, name)
    return made, tmp_path


@pytest.fixture
def secure_mesh(keys):
    made, root = keys
    mesh = InProcessMesh(
        "tcp://127.0.0.1:*",
        curve_secret_key_file=made["broker"][1],
        curve_client_keys_dir=root / "clients",
        curve_worker_keys_dir=root / "workers",
    )
    yield mesh
    mesh.close()


def curve_options(made, who):
    return {"curve_secret_key_file": made[who][1], "curve_server_key_file": made["broker"][0]}


class TestCurve:
    def test_allowed_client_reaches_worker_which_sees_its_public_key(self, secure_mesh, keys):
        """With CURVE on, the worker's context.identity is the client's Z85 public key."""
        made, _ = keys
        secure_mesh.raw(SERVICE, whoami, **curve_options(made, "worker"))
        secure_mesh.wait_for_service(SERVICE)

        with secure_mesh.transport(**curve_options(made, "client")) as transport:
            reply = transport.request(SERVICE, [b"?"])

        assert public_key_of(made["client"][0]).encode() == reply[0].bytes

    def test_client_with_unknown_key_gets_nothing_through(self, secure_mesh, keys):
        """A stranger's key is refused by ZAP: no request reaches the broker, the call times out."""
        made, _ = keys
        worker = secure_mesh.raw(SERVICE, whoami, **curve_options(made, "worker"))
        secure_mesh.wait_for_service(SERVICE)

        with (
            secure_mesh.transport(**curve_options(made, "stranger"), retries_max=0) as transport,
            pytest.raises(Timeout),
        ):
            transport.request(SERVICE, [b"?"], timeout_ms=700)

        assert (0, 0) == (worker.handled, secure_mesh.broker.state.in_flight)

    def test_plaintext_client_gets_nothing_through(self, secure_mesh, keys):
        """A client without CURVE cannot complete the handshake at all."""
        made, _ = keys
        worker = secure_mesh.raw(SERVICE, whoami, **curve_options(made, "worker"))
        secure_mesh.wait_for_service(SERVICE)

        with (
            secure_mesh.transport(retries_max=0) as transport,
            pytest.raises(Timeout),
        ):
            transport.request(SERVICE, [b"?"], timeout_ms=700)

        assert (0, 0) == (worker.handled, secure_mesh.broker.state.in_flight)

    def test_client_key_cannot_register_as_worker(self, secure_mesh, keys):
        """A peer admitted as a client sends READY in vain: the service stays unserved."""
        made, _ = keys
        secure_mesh.raw(SERVICE, whoami, registered=False, **curve_options(made, "client"))

        with secure_mesh.transport(**curve_options(made, "client")) as transport:
            available = transport.service_available(SERVICE)

        assert available is False
        rejected = secure_mesh.broker.metrics.rejected_frames.labels("unauthorized_service")
        assert rejected._value.get()
