"""`latentmas up --http-port` alone serves every endpoint for the agents of `latentmas agents`,
and `latentmas gateway` refuses to start without CURVE."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import httpx
import pytest

from latentmas_mesh.testing.mesh import CLI

pytestmark = pytest.mark.slow
START_S = 120


def _cli(args, env, **options):
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, check=False,
                          timeout=60, **options)  # fmt: skip


def _env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "LATENTMAS_STATE_DIR": str(tmp_path / "state"),
        "LATENTMAS_CACHE_DIR": str(tmp_path / "cache"),
        "LATENTMAS_LOG_LEVEL": "warning",
    }


def _gateway_url(process: subprocess.Popen[str]) -> str:
    """The URL `up` prints on its gateway line."""
    deadline = time.monotonic() + START_S
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        match = re.match(r"gateway\s+(http://\S+)", line)
        if match:
            return match[1]
    raise AssertionError(
        f"no gateway line; stderr: {process.stderr.read() if process.stderr else ''}"
    )


def test_up_with_http_port_serves_the_registrys_agents(tmp_path):
    """Agents made before and after start authenticate; a deposit by the operator (made
    before start) funds alice; Ctrl-C stops everything."""
    env = _env(tmp_path)
    ops = json.loads(_cli(["agents", "add", "ops", "--operator", "--json"], env).stdout)
    process = subprocess.Popen(
        [*CLI, "up", "--http-port", "0"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = _gateway_url(process)
        alice = json.loads(_cli(["agents", "add", "alice", "--json"], env).stdout)
        with httpx.Client(base_url=url, timeout=60) as http:
            health = http.get("/healthz")
            deposit = http.post(
                "/api/latentmas/ledger/deposit",
                json={"event_id": "cli-1", "agent_id": alice["agent"], "amount_units": 9},
                headers={"authorization": f"Bearer {ops['token']}"},
            )
            balance = http.get(
                "/api/latentmas/ledger/balance",
                headers={"authorization": f"Bearer {alice['token']}"},
            )
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)

    assert 200 == health.status_code, health.text
    assert 200 == deposit.status_code, deposit.text
    assert 9 == balance.json()["balance_units"]
    assert "stopped" in out
    assert 0 == process.returncode


def test_gateway_without_curve_says_what_is_missing(tmp_path):
    env = {k: v for k, v in _env(tmp_path).items() if not k.startswith("LATENTMAS_CURVE")}
    result = _cli(["gateway", "--connect", "tcp://127.0.0.1:9", "--http-port", "0"], env)

    assert 2 == result.returncode
    assert "LATENTMAS_CURVE_SERVER_KEY_FILE" in result.stderr
    assert "Traceback" not in result.stderr
