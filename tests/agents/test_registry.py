"""The agent registry: one agent id per agent for its CURVE key and its bearer token, durable,
and a revocation that holds at the very next authentication, in any process."""

from __future__ import annotations

import hmac
import stat
import threading
import time

import pytest

from latentmas_mesh.agents import (
    DATABASE_NAME,
    AgentExists,
    AgentRegistry,
    AgentSettings,
    InvalidAgentName,
    UnknownAgent,
    _token,
)
from latentmas_mesh.transport import public_key_of

AUTHENTICATE_S_MAX = 1e-3


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def registry(state):
    with AgentRegistry(state, clock=iter(range(1_000, 10**9, 1_000)).__next__) as opened:
        yield opened


def altered(token):
    """The token with its last secret character changed: same lookup id, wrong secret."""
    return token[:-1] + ("A" if token[-1] != "A" else "B")


class TestAdd:
    def test_an_agents_id_is_its_curve_public_key_and_its_token_finds_it(self, registry):
        """`add` makes one key pair and one token for one agent id: the public key (Z85) in
        keys/clients, the secret in keys/secrets, and the token authenticates as that agent."""
        enrolment = registry.add("alice", operator=True)

        agent = enrolment.agent
        assert agent.agent_id == public_key_of(enrolment.keys.public_file)
        assert agent.agent_id == public_key_of(enrolment.keys.secret_file)
        assert registry.keys.public_file("alice") == enrolment.keys.public_file
        assert registry.keys.secret_file("alice") == enrolment.keys.secret_file
        assert (True, 1_000, None) == (agent.operator, agent.created_at_ms, agent.revoked_at_ms)
        assert agent == registry.authenticate(enrolment.token)

    def test_a_token_is_random_prefixed_and_never_in_a_repr(self, registry):
        """Two tokens share only their `lmt_` marker's shape; the token appears in no repr."""
        first, second = registry.add("alice"), registry.add("bob")

        assert (64, 64) == (len(first.token), len(second.token))
        assert first.token.startswith("lmt_")
        assert first.token[:20] != second.token[:20]
        assert first.token not in repr(first)

    def test_a_duplicate_name_is_refused_and_the_first_agent_kept(self, registry):
        """A second `add alice` raises AgentExists (a CONFLICT) and leaves alice's keys and
        token as they were."""
        first = registry.add("alice")
        secret_before = first.keys.secret_file.read_bytes()

        with pytest.raises(AgentExists) as refused:
            registry.add("alice")

        assert "CONFLICT" == refused.value.code.value
        assert secret_before == first.keys.secret_file.read_bytes()
        assert first.agent == registry.authenticate(first.token)
        assert [first.agent] == registry.agents()

    def test_a_revoked_name_stays_taken(self, registry):
        """A revoked agent's name cannot be given to a new agent (its account is history)."""
        registry.add("alice")
        registry.revoke("alice")

        with pytest.raises(AgentExists):
            registry.add("alice")

    @pytest.mark.parametrize(
        "bad", ["", "Alice", "a/b", "..", ".hidden", "-x", "a b", "x" * 65, "é", "gateway"]
    )
    def test_a_name_that_cannot_name_a_file_or_is_reserved_is_refused_before_any_write(
        self, registry, bad
    ):
        """Names become file names: one lowercase word, and not the gateway's own."""
        with pytest.raises(InvalidAgentName):
            registry.add(bad)

        assert [] == registry.agents()
        assert not registry.keys.secrets.exists() or [] == list(registry.keys.secrets.iterdir())

    def test_concurrent_adds_of_one_name_leave_one_agent_whose_files_match_it(self, state):
        """Eight registries (eight connections, as eight processes would have) add `alice` at
        once: one succeeds, seven get AgentExists, and the key files on disk are the winner's
        (the write lock covers the key files, so no loser overwrites them)."""
        outcomes: list[object] = []
        start = threading.Barrier(8)

        def add() -> None:
            with AgentRegistry(state) as own:
                start.wait()
                try:
                    outcomes.append(own.add("alice"))
                except AgentExists as error:
                    outcomes.append(error)

        threads = [threading.Thread(target=add) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        (winner,) = [o for o in outcomes if not isinstance(o, AgentExists)]
        with AgentRegistry(state) as reopened:
            agent = reopened.authenticate(winner.token)

        assert 7 == sum(isinstance(o, AgentExists) for o in outcomes)
        assert winner.agent == agent
        assert agent.agent_id == public_key_of(reopened.keys.secret_file("alice"))
        assert agent.agent_id == public_key_of(reopened.keys.public_file("alice"))


class TestAuthenticate:
    def test_a_wrong_malformed_or_unknown_token_authenticates_no_one(self, registry):
        """A right id with a wrong secret, an id never issued, a truncated or over-long token,
        and things that are not strings all give None."""
        token = registry.add("alice").token
        unknown = f"lmt_{'0' * 16}_{token[21:]}"

        results = [
            registry.authenticate(candidate)
            for candidate in (altered(token), unknown, token[:-1], token + "x", "", None, b"x")
        ]

        assert [None] * 7 == results

    def test_every_check_compares_digests_in_constant_time(self, registry, monkeypatch):
        """The stored digest is compared with hmac.compare_digest, for a right token, a wrong
        one and an unknown id alike (so timing tells neither the digest nor the id apart)."""
        token = registry.add("alice").token
        compared = []
        compare = hmac.compare_digest

        def spy(a, b):
            compared.append((len(a), len(b)))
            return compare(a, b)

        monkeypatch.setattr(_token.hmac, "compare_digest", spy)
        registry.authenticate(token)
        registry.authenticate(altered(token))
        registry.authenticate(f"lmt_{'0' * 16}_{token[21:]}")

        assert [(32, 32)] * 3 == compared

    def test_a_revocation_by_another_process_holds_at_the_next_call(self, state):
        """The gateway's registry authenticates alice; the CLI's (its own connection) revokes
        her; the gateway's very next call refuses the token, with no wait and no reopen."""
        with AgentRegistry(state) as gateway, AgentRegistry(state) as cli:
            token = cli.add("alice").token
            before = gateway.authenticate(token)
            cli.revoke("alice")
            after = gateway.authenticate(token)

        assert ("alice", None) == (before.name, after)

    def test_authenticate_costs_well_under_a_millisecond(self, registry):
        """Each call reads the database (no cache); 2,000 calls average far below 1 ms."""
        token = registry.add("alice").token
        for _ in range(100):
            registry.authenticate(token)
        calls = 2_000
        started = time.perf_counter()
        for _ in range(calls):
            registry.authenticate(token)
        per_call_s = (time.perf_counter() - started) / calls

        assert per_call_s < AUTHENTICATE_S_MAX


class TestRevoke:
    def test_revoke_stops_the_token_and_withdraws_the_public_key(self, registry):
        """After `revoke`, the token fails, the key leaves keys/clients (the broker's allow
        list), the agent is listed as revoked with its time, and a second revoke keeps it."""
        enrolment = registry.add("alice")

        revoked = registry.revoke("alice")
        again = registry.revoke("alice")

        assert None is registry.authenticate(enrolment.token)
        assert not enrolment.keys.public_file.exists()
        assert (True, 2_000) == (revoked.revoked, revoked.revoked_at_ms)
        assert [revoked] == registry.agents() == [again]

    def test_revoking_an_unknown_name_is_refused(self, registry):
        with pytest.raises(UnknownAgent):
            registry.revoke("nobody")

    def test_revoking_one_agent_leaves_the_others_working(self, registry):
        alice, bob = registry.add("alice"), registry.add("bob")

        registry.revoke("alice")

        assert (None, bob.agent) == (
            registry.authenticate(alice.token),
            registry.authenticate(bob.token),
        )
        assert bob.keys.public_file.exists()


class TestStorage:
    def test_the_registry_survives_a_reopen(self, state):
        """Agents, flags, revocations and tokens are on disk: a new registry on the same state
        directory answers exactly as the old one did."""
        with AgentRegistry(state) as first:
            alice, bob = first.add("alice", operator=True), first.add("bob")
            first.revoke("bob")
            listed = first.agents()

        with AgentRegistry(state) as reopened:
            assert listed == reopened.agents()
            assert alice.agent == reopened.authenticate(alice.token)
            assert None is reopened.authenticate(bob.token)

    def test_tokens_are_stored_only_as_digests(self, registry, state):
        """No file in the state directory holds a token; the database holds its SHA-256."""
        token = registry.add("alice").token
        registry.close()
        stored = b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())

        assert token.encode() not in stored
        assert _token.token_digest(token) in stored

    def test_secrets_are_private_and_public_keys_are_where_the_broker_reads_them(self, registry):
        """keys/secrets is 0700 and each .key_secret 0600; keys/clients holds only public keys."""
        enrolment = registry.add("alice")
        gateway = registry.gateway_keys()

        modes = {
            path.name: stat.S_IMODE(path.stat().st_mode)
            for path in (registry.keys.secrets, enrolment.keys.secret_file, gateway.secret_file)
        }
        assert {"secrets": 0o700, "alice.key_secret": 0o600, "gateway.key_secret": 0o600} == modes
        assert ["alice.key", "gateway.key"] == sorted(
            p.name for p in registry.keys.clients.iterdir()
        )
        assert all("secret-key" not in p.read_text() for p in registry.keys.clients.iterdir())

    def test_the_state_directory_comes_from_latentmas_state_dir(self, tmp_path, monkeypatch):
        monkeypatch.setenv("LATENTMAS_STATE_DIR", str(tmp_path / "elsewhere"))

        with AgentRegistry.from_settings() as registry:
            registry.add("alice")

        assert (tmp_path / "elsewhere" / DATABASE_NAME).is_file()
        assert tmp_path / "elsewhere" == AgentSettings().state_dir


class TestGatewayKeys:
    def test_the_gateways_key_pair_is_made_once_and_kept(self, state):
        """The first call creates it (public key in keys/clients, so the broker admits the
        gateway); later calls, and other registries, return the same pair."""
        with AgentRegistry(state) as first:
            made = first.gateway_keys()
            again = first.gateway_keys()
        with AgentRegistry(state) as reopened:
            kept = reopened.gateway_keys()

        assert made == again == kept
        assert made.identity == public_key_of(made.public_file) == public_key_of(made.secret_file)
        assert reopened.keys.clients == made.public_file.parent
