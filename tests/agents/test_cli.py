"""`latentmas agents add|list|revoke|gateway`: the token shown once, typed refusals, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from latentmas_mesh.agents import AgentRegistry
from latentmas_mesh.cli import _register_subcommands, app
from latentmas_mesh.transport import public_key_of


@pytest.fixture
def state(tmp_path, monkeypatch):
    """The state directory, given the way operators give it: LATENTMAS_STATE_DIR."""
    monkeypatch.setenv("LATENTMAS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def agents(*args):
    _register_subcommands()
    return CliRunner().invoke(app, ["agents", *args])


class TestAgentsCommand:
    def test_add_json_prints_the_agent_and_its_token_which_authenticates(self, state):
        """`add --json` prints one object with `agent` (the id: the public key it wrote) and
        `token`; the registry in LATENTMAS_STATE_DIR authenticates that token as that agent."""
        result = agents("add", "alice", "--operator", "--json")
        printed = json.loads(result.stdout)

        with AgentRegistry(state) as registry:
            agent = registry.authenticate(printed["token"])
        assert 0 == result.exit_code
        assert printed["agent"] == agent.agent_id == public_key_of(Path(printed["public_key_file"]))
        assert ("alice", True) == (agent.name, printed["operator"])

    def test_the_token_is_shown_once(self, state):
        """`add` prints the token; `list`, in text or JSON, never does."""
        added = agents("add", "alice")
        token = next(
            line.split()[1] for line in added.stdout.splitlines() if line.startswith("token")
        )

        listed = agents("list").stdout + agents("list", "--json").stdout

        assert token.startswith("lmt_")
        assert token not in listed
        assert "alice" in listed

    def test_list_json_shows_every_agent_with_its_state(self, state):
        agents("add", "alice")
        agents("add", "bob", "--operator")
        agents("revoke", "alice")

        listed = json.loads(agents("list", "--json").stdout)

        assert [("alice", False, True), ("bob", True, False)] == [
            (a["name"], a["operator"], a["revoked"]) for a in listed
        ]

    def test_revoke_makes_the_token_fail_at_once(self, state):
        token = json.loads(agents("add", "alice", "--json").stdout)["token"]

        with AgentRegistry(state) as gateway:
            before = gateway.authenticate(token)
            result = agents("revoke", "alice")
            after = gateway.authenticate(token)

        assert (0, "alice", None) == (result.exit_code, before.name, after)
        assert "revoked alice" in result.stdout
        assert not (state / "keys" / "clients" / "alice.key").exists()

    def test_a_duplicate_name_is_a_conflict(self, state):
        agents("add", "alice")

        result = agents("add", "alice")

        assert 1 == result.exit_code
        assert "CONFLICT: agent 'alice' exists already" in result.stderr

    def test_revoking_an_unknown_name_says_so(self, state):
        result = agents("revoke", "nobody")

        assert 1 == result.exit_code
        assert "no agent 'nobody'" in result.stderr

    @pytest.mark.parametrize("bad", ["Alice", "../x", "gateway"])
    def test_a_bad_name_is_a_usage_error_and_writes_nothing(self, state, bad):
        result = agents("add", bad)

        assert 2 == result.exit_code
        assert "NAME" in result.stderr
        assert not (state / "keys").exists()

    def test_state_dir_flag_wins_over_the_environment(self, state, tmp_path):
        agents("add", "alice", "--state-dir", str(tmp_path / "flag"))

        assert (tmp_path / "flag" / "keys" / "clients" / "alice.key").is_file()
        assert not (state / "keys").exists()

    def test_gateway_prints_the_same_key_pair_every_time(self, state):
        """`agents gateway --json` creates the gateway's pair once; its `gateway` is the public
        key workers list in LATENTMAS_GATEWAY_KEYS."""
        first = json.loads(agents("gateway", "--json").stdout)
        second = json.loads(agents("gateway", "--json").stdout)

        assert first == second
        assert first["gateway"] == public_key_of(state / "keys" / "clients" / "gateway.key")
