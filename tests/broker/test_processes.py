"""The mesh as separate OS processes: harness fixture, SIGTERM drain, broker restart, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from typer.testing import CliRunner

from latentmas_mesh.cli import _register_subcommands, app
from latentmas_mesh.testing.mesh import CLI, LocalMesh
from latentmas_mesh.transport import public_key_of
from workers.echo import SERVICE as ECHO

from .kinds import KINDS_ENV, SLOW_SERVICE

pytestmark = pytest.mark.slow
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
ENV = {**KINDS_ENV, "PYTHONPATH": REPO_ROOT}


@pytest.mark.mesh(workers={"echo": 2})
def test_local_mesh_fixture_starts_broker_and_worker_processes(local_mesh):
    """The pytest fixture gives a running mesh: two echo processes registered and serving."""
    with local_mesh.transport() as transport:
        replies = [transport.request(ECHO, [b"%d" % i])[0].bytes for i in range(20)]

    assert {ECHO: 2} == local_mesh.registered_workers()
    assert [b"%d" % i for i in range(20)] == replies


def test_sigterm_lets_the_request_in_flight_finish_and_disconnects_workers():
    """SIGTERM: the broker stops accepting, waits for the request in hand, tells workers."""
    with LocalMesh({"slow": 1}, env=ENV) as mesh:
        replies = []
        transport = mesh.transport(retries_max=0)
        caller = threading.Thread(
            target=lambda: replies.append(transport.request(SLOW_SERVICE, [b"1.0"]))
        )
        caller.start()
        time.sleep(0.4)
        mesh.broker.popen.send_signal(signal.SIGTERM)
        caller.join(10)
        exit_code = mesh.broker.popen.wait(10)
        time.sleep(0.3)
        worker_log = mesh.worker_processes[0].log_path.read_text()
        transport.close()

    assert [[b"1.0"]] == [[frame.bytes for frame in reply] for reply in replies]
    assert 0 == exit_code
    assert "broker said DISCONNECT" in worker_log


def test_workers_and_clients_survive_a_broker_restart():
    """After SIGKILL and restart of the broker, the worker re-registers by itself and a
    retried call (same request id) is answered."""
    with LocalMesh({"echo": 1}) as mesh:
        worker_pid = mesh.worker_processes[0].pid
        mesh.kill(mesh.broker)
        mesh.start_broker()
        transport = mesh.transport(attempt_timeout_ms=1_000, retries_max=10)
        reply = transport.request(ECHO, [b"after restart"], timeout_ms=15_000)
        transport.close()
        mesh.wait_for_workers(1, timeout_s=5)

    assert [b"after restart"] == [frame.bytes for frame in reply]
    assert worker_pid == mesh.worker_processes[0].pid


def test_worker_command_runs_and_stops_concurrent_processes():
    """`latentmas worker echo --concurrency 2` registers two workers and exits on SIGTERM."""
    with LocalMesh({}) as mesh:
        command = subprocess.Popen(
            [*CLI, "worker", "echo", "--connect", mesh.broker_url, "--concurrency", "2"],
            env={**os.environ, "LATENTMAS_HEARTBEAT_MS": "500"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            mesh.wait_for_workers(2, timeout_s=30)
            command.send_signal(signal.SIGTERM)
            exit_code = command.wait(20)
        finally:
            if command.poll() is None:
                command.kill()
        time.sleep(0.7)  # the gauges refresh twice a second
        left = mesh.registered_workers()

    assert 0 == exit_code
    assert 0 == left.get(ECHO, 0)


def test_keys_command_writes_a_usable_key_pair(tmp_path):
    """`latentmas keys NAME --dir D` writes NAME.key and NAME.key_secret."""
    _register_subcommands()

    result = CliRunner().invoke(app, ["keys", "alice", "--dir", str(tmp_path)])

    assert 0 == result.exit_code, result.output
    assert public_key_of(tmp_path / "alice.key") == public_key_of(tmp_path / "alice.key_secret")
    assert public_key_of(tmp_path / "alice.key") in result.output
