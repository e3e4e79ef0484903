"""CURVE + ZAP: only allowed keys get through, and workers learn the client's identity."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter

import pytest
import zmq

from broker.server import Broker
from broker.settings import BrokerSettings
from latentmas_mesh import codec, mdp
from latentmas_mesh.errors import PayloadTooLarge, Timeout, Unauthorized
from latentmas_mesh.ledger.sweeper import ReservationSweeper
from latentmas_mesh.protocol.ledger import (
    LEDGER_SERVICE,
    BalanceReply,
    BalanceRequest,
    DepositEvent,
    EventResult,
    LedgerEventsReply,
)
from latentmas_mesh.services.ledger_settings import LedgerSettings
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.transport import (
    ReplySealer,
    ReplyVerifier,
    UnverifiedReply,
    create_key_pair,
    list_worker_key,
    public_key_of,
    use_curve,
)
from workers.base import RequestContext
from workers.ledger import LedgerWorker, build_service, wall_clock_ms

from .conftest import InProcessMesh

SERVICE = "secure.whoami"
ALIGN = "latentmas.align"
PROBE_REQUESTS = 20


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


def curve_mesh(made, root):
    """A CURVE mesh over `made`'s broker key and `root`'s clients/ and workers/ key folders."""
    mesh = InProcessMesh(
        "tcp://127.0.0.1:*",
        curve_secret_key_file=made["broker"][1],
        curve_client_keys_dir=root / "clients",
        curve_worker_keys_dir=root / "workers",
    )
    yield mesh
    mesh.close()


@pytest.fixture
def secure_mesh(keys):
    made, root = keys
    yield from curve_mesh(made, root)


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

    def test_a_key_withdrawn_while_connected_is_refused_from_its_next_request(
        self, secure_mesh, keys
    ):
        """Revoking an agent removes its key file: the broker re-reads the folder and answers
        the still-connected client's requests UNAUTHORIZED from then on; the worker sees none."""
        made, _ = keys
        served = []

        def counting(body, context):
            served.append(1)
            return whoami(body, context)

        secure_mesh.raw(SERVICE, counting, **curve_options(made, "worker"))
        secure_mesh.wait_for_service(SERVICE)
        with secure_mesh.transport(**curve_options(made, "client"), retries_max=0) as transport:
            transport.request(SERVICE, [b"?"])
            made["client"][0].unlink()

            def refused():
                body = transport.request(SERVICE, [b"?"], timeout_ms=2_000)
                if body[0].bytes == public_key_of(made["client"][1]).encode():
                    return False  # still served: the broker has not looked again yet
                return "UNAUTHORIZED" == codec.decode(body).message.code

            assert wait_for(refused)
            before = len(served)
            assert refused()

        assert before == len(served)

    def test_a_key_added_while_running_is_admitted(self, secure_mesh, keys):
        """`latentmas agents add` writes a key file after the broker started: it connects."""
        made, root = keys
        secure_mesh.raw(SERVICE, whoami, **curve_options(made, "worker"))
        secure_mesh.wait_for_service(SERVICE)
        shutil.copy(made["stranger"][0], root / "clients" / "stranger.key")

        def admitted():
            with secure_mesh.transport(
                **curve_options(made, "stranger"), retries_max=0
            ) as transport:
                try:
                    return bool(transport.request(SERVICE, [b"?"], timeout_ms=500))
                except Timeout:
                    return False

        assert wait_for(admitted)

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


@pytest.fixture
def bound_keys(tmp_path):
    """Broker and client keys; worker keys each listed for its own services: `align` for ALIGN,
    `ledger` and `impostor` for LEDGER_SERVICE, `both` for svc.a and svc.b. The client trusts
    ledger answers from `ledger` only (its own folder `trusted/`)."""
    made = {"broker": create_key_pair(tmp_path / "broker", "broker")}
    made["client"] = create_key_pair(tmp_path / "clients", "client")
    listed = {
        "align": [ALIGN],
        "ledger": [LEDGER_SERVICE],
        "impostor": [LEDGER_SERVICE],
        "both": ["svc.a", "svc.b"],
    }
    for name, services in listed.items():
        made[name] = create_key_pair(tmp_path / "secrets", name)
        for service in services:
            list_worker_key(made[name][0], tmp_path / "workers", service)
    (tmp_path / "trusted").mkdir()
    shutil.copyfile(made["ledger"][0], tmp_path / "trusted" / "ledger.key")
    return made, tmp_path


@pytest.fixture
def bound_mesh(bound_keys):
    made, root = bound_keys
    yield from curve_mesh(made, root)


def named(name):
    """A handler answering every request with `name`: who served it."""
    return lambda body, context: [name.encode()]


def wait_for(condition, timeout_s=5.0):
    """Whether `condition()` became true within `timeout_s` (polled every 10 ms)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def rejected_for_service(mesh):
    return mesh.broker.metrics.rejected_frames.labels("unauthorized_service")._value.get()


class TestWorkerKeysAreBoundToServices:
    def test_align_key_registering_as_the_ledger_gets_disconnect_and_serves_nothing(
        self, bound_mesh, bound_keys
    ):
        """The probe of issue 12: an align worker's key sends READY for the ledger. The broker
        answers DISCONNECT and counts it; of 20 ledger requests the rogue (which keeps
        reconnecting) serves none, the ledger's own worker all (before: 7 of 20 went rogue)."""
        made, _ = bound_keys
        dealer = bound_mesh.context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.RCVTIMEO, 2_000)
        use_curve(dealer, made["align"][1], made["broker"][0])
        dealer.connect(bound_mesh.endpoint)
        try:
            dealer.send_multipart(mdp.worker_ready(LEDGER_SERVICE.encode()))
            answer = mdp.parse_for_worker(dealer.recv_multipart())
        finally:
            dealer.close()
        refused_once = rejected_for_service(bound_mesh)
        bound_mesh.raw(LEDGER_SERVICE, named("ledger"), **curve_options(made, "ledger"))
        rogue = bound_mesh.raw(
            LEDGER_SERVICE, named("rogue"), registered=False, **curve_options(made, "align")
        )

        with bound_mesh.transport(**curve_options(made, "client")) as transport:
            served = Counter(
                transport.request(LEDGER_SERVICE, [b"settle %d" % i])[0].bytes
                for i in range(PROBE_REQUESTS)
            )
        refused_later = wait_for(lambda: rejected_for_service(bound_mesh) > refused_once)

        assert isinstance(answer, mdp.BrokerDisconnect)
        assert (True, True) == (refused_once >= 1, refused_later)
        assert {b"ledger": PROBE_REQUESTS} == served
        assert 0 == rogue.handled

    def test_a_key_directly_under_the_worker_keys_dir_stops_the_broker_starting(self, tmp_path):
        """A loose `workers/*.key` belongs to no service: the broker refuses to start (naming
        the file and the layout) rather than guess what it may serve."""
        _, secret = create_key_pair(tmp_path / "broker", "broker")
        create_key_pair(tmp_path / "workers", "loose")
        settings = BrokerSettings(
            bind=["tcp://127.0.0.1:*"],
            curve_secret_key_file=secret,
            curve_worker_keys_dir=tmp_path / "workers",
        )

        with pytest.raises(Unauthorized) as refused:
            Broker(settings)

        assert "loose.key" in refused.value.message
        assert "<service>/<name>.key" in refused.value.message

    def test_a_key_listed_for_two_services_registers_for_either(self, bound_mesh, bound_keys):
        """One key in the folders of svc.a and svc.b serves both, under one identity."""
        made, _ = bound_keys
        bound_mesh.raw("svc.a", named("a"), **curve_options(made, "both"))
        bound_mesh.raw("svc.b", named("b"), **curve_options(made, "both"))

        with bound_mesh.transport(**curve_options(made, "client")) as transport:
            replies = [transport.request(s, [b"?"])[0].bytes for s in ("svc.a", "svc.b")]

        assert [b"a", b"b"] == replies
        assert 0 == rejected_for_service(bound_mesh)


def run_keys_command(*args):
    from typer.testing import CliRunner

    from latentmas_mesh.cli import _register_subcommands, app

    _register_subcommands()
    return CliRunner().invoke(app, ["keys", *args])


class TestKeysCommand:
    def test_keys_with_service_makes_a_worker_key_the_broker_binds_to_it(self, tmp_path):
        """`latentmas keys w --service S` lists w.key in DIR/workers/S/: a broker reading
        DIR/workers lets w register for S and refuses it anything else."""
        made = run_keys_command("w", "--dir", str(tmp_path), "--service", SERVICE)
        broker_public, broker_secret = create_key_pair(tmp_path / "broker", "broker")
        mesh = InProcessMesh(
            "tcp://127.0.0.1:*",
            curve_secret_key_file=broker_secret,
            curve_worker_keys_dir=tmp_path / "workers",
        )
        try:
            options = {
                "curve_secret_key_file": tmp_path / "w.key_secret",
                "curve_server_key_file": broker_public,
            }
            mesh.raw(SERVICE, whoami, **options)  # returns once registered
            mesh.raw("other.service", whoami, registered=False, **options)
            refused = wait_for(lambda: rejected_for_service(mesh) >= 1)
        finally:
            mesh.close()

        assert (0, True) == (made.exit_code, refused)
        assert (tmp_path / "workers" / SERVICE / "w.key").read_text() == (
            tmp_path / "w.key"
        ).read_text()

    @pytest.mark.parametrize("bad", ["..", "a/b", ""])
    def test_keys_refuses_a_service_that_is_not_one_folder(self, tmp_path, bad):
        """A service name that would leave DIR/workers is refused before any key is made."""
        result = run_keys_command("w", "--dir", str(tmp_path), "--service", bad)

        assert (2, []) == (result.exit_code, list(tmp_path.iterdir()))


def applied(body, amount_units):
    """The request id and the frames of an "applied" answer to a one-event batch."""
    request = codec.decode(body)
    event_id = request.message.events[0].event_id
    result = EventResult(event_id=event_id, kind="deposit", status=0, amount_units=amount_units)
    reply = LedgerEventsReply(results=(result,))
    return request.request_id, codec.encode(reply, request_id=request.request_id)


def forger(how, secret_key_file):
    """A ledger impostor's handler answering "applied, 1,000,000 units": unsealed, sealed by
    `secret_key_file`, a sealed answer of 1 unit with the amount rewritten after sealing, or
    sealed for another request id."""
    sealer = ReplySealer(secret_key_file)

    def handle(body, context):
        request_id, frames = applied(body, 10**6)
        if how == "unsealed":
            return frames
        if how == "for another request":
            return sealer.seal(context.identity, "an-earlier-request", frames)
        if how == "altered":
            *_, seal = sealer.seal(context.identity, request_id, applied(body, 1)[1])
            return [*frames, seal]
        return sealer.seal(context.identity, request_id, frames)

    return handle


def secure_ledger_client(mesh, made, root):
    transport = mesh.transport(**curve_options(made, "client"), ledger_keys_dir=root / "trusted")
    return transport, LedgerClient(transport)


class TestLedgerAnswersAreSealed:
    @pytest.mark.parametrize(
        ("key", "how", "reason"),
        [
            ("impostor", "unsealed", "missing"),
            ("impostor", "sealed", "untrusted_key"),
            ("ledger", "altered", "mismatch"),
            ("ledger", "for another request", "mismatch"),
        ],
    )
    def test_a_forged_applied_answer_is_refused_by_the_sdk(
        self, bound_mesh, bound_keys, key, how, reason
    ):
        """A worker the broker lets serve the ledger answers "applied": unsealed, sealed by a
        key the client does not trust, or with a trusted key's seal that does not match the
        body or the request id. The SDK raises UnverifiedReply and returns no result."""
        made, root = bound_keys
        bound_mesh.raw(LEDGER_SERVICE, forger(how, made[key][1]), **curve_options(made, key))
        transport, client = secure_ledger_client(bound_mesh, made, root)
        event = DepositEvent(event_id="forged-1", agent_id="anyone", amount_units=10**6)

        with transport, pytest.raises(UnverifiedReply) as refused:
            client.apply(event)

        assert reason == refused.value.details["reason"]

    def test_the_ledger_workers_own_sealed_answers_are_taken(
        self, bound_mesh, bound_keys, tmp_path
    ):
        """The real ledger worker, under its trusted key, seals each answer: the client's
        deposit (open deposits) is applied and its balance read back through the seal; a
        refusal is sealed too (Unauthorized as itself, not UnverifiedReply), and so is the
        error for a request that does not even decode (addressed by its peeked id)."""
        made, root = bound_keys
        settings = LedgerSettings(
            ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
            ledger_quote_key_file=tmp_path / "quote.key",
            ledger_open_deposits=True,
        )
        service = build_service(settings)
        sweeper = ReservationSweeper(service.store, clock=wall_clock_ms, interval_ms=1_000)
        worker_settings = bound_mesh.worker_settings(**curve_options(made, "ledger"))
        sealer = ReplySealer(made["ledger"][1])
        worker = LedgerWorker(service, sweeper, worker_settings, sealer=sealer)
        bound_mesh.run_worker(worker)
        transport, client = secure_ledger_client(bound_mesh, made, root)
        me = public_key_of(made["client"][0])
        # A request refused before any handler ran (over-long body from a foreign broker).
        refusal = worker.refusal(
            PayloadTooLarge("too many frames"), RequestContext("r-9", LEDGER_SERVICE, me, b"")
        )

        undecodable = [*codec.encode(BalanceRequest(), request_id="bad-1"), b"stray frame"]
        verifier = ReplyVerifier(made["client"][1], [public_key_of(made["ledger"][0])])

        with transport:
            result = client.deposit(me, 250, event_id="sealed-1")
            balance = client.balance()
            with pytest.raises(Unauthorized) as refused:
                client.statement("agent:someone-else")
            answer = verifier.open("bad-1", transport.request(LEDGER_SERVICE, undecodable))

        assert ("deposit", 250) == (result.kind, result.amount_units)
        assert (f"agent:{me}", 250) == (balance.account, balance.balance_units)
        assert not isinstance(refused.value, UnverifiedReply)
        assert "INVALID_REQUEST" == codec.decode(answer).message.code
        assert "PAYLOAD_TOO_LARGE" == codec.decode(verifier.open("r-9", refusal)).message.code


WHOAMI = "secure.whoami-typed"


@pytest.fixture
def delegation_keys(tmp_path):
    """Broker; clients `gateway`, `alice` and `bob`; a worker key listed for WHOAMI."""
    made = {"broker": create_key_pair(tmp_path / "broker", "broker")}
    for name in ("gateway", "alice", "bob"):
        made[name] = create_key_pair(tmp_path / "clients", name)
    made["worker"] = create_key_pair(tmp_path / "secrets", "worker")
    list_worker_key(made["worker"][0], tmp_path / "workers", WHOAMI)
    return made, tmp_path


@pytest.fixture
def delegation_mesh(delegation_keys):
    made, root = delegation_keys
    yield from curve_mesh(made, root)


def typed_whoami(seen):
    """A typed handler answering who the request is for (account) and who sent it (currency),
    recording each context it was given."""

    def handle(request, context):
        seen.append(context)
        return BalanceReply(account=context.identity, balance_units=0, currency=context.peer)

    return handle


class TestOnBehalfOf:
    def start(self, mesh, made, seen, gateways=("gateway",)):
        keys = [public_key_of(made[name][0]) for name in gateways]
        options = curve_options(made, "worker")
        mesh.typed(WHOAMI, typed_whoami(seen), gateway_keys=frozenset(keys), **options)

    def test_the_gateway_acting_for_alice_is_served_as_alice(
        self, delegation_mesh, delegation_keys
    ):
        """The gateway's CURVE key names alice in the header: the worker's identity is alice's
        key (what the ledger would charge), its peer the gateway's."""
        made, _ = delegation_keys
        seen = []
        self.start(delegation_mesh, made, seen)
        alice, gateway = (public_key_of(made[n][0]) for n in ("alice", "gateway"))

        with delegation_mesh.transport(**curve_options(made, "gateway")) as transport:
            reply = transport.call(WHOAMI, BalanceRequest(), on_behalf_of=alice).message

        assert (alice, gateway) == (reply.account, reply.currency)
        assert (alice, gateway) == (seen[0].identity, seen[0].gateway)

    def test_without_on_behalf_of_every_peer_is_its_own_key(self, delegation_mesh, delegation_keys):
        made, _ = delegation_keys
        seen = []
        self.start(delegation_mesh, made, seen)
        answers = {}
        for name in ("gateway", "alice"):
            with delegation_mesh.transport(**curve_options(made, name)) as transport:
                answers[name] = transport.call(WHOAMI, BalanceRequest()).message.account

        assert {n: public_key_of(made[n][0]) for n in ("gateway", "alice")} == answers
        assert [None, None] == [context.gateway for context in seen]

    def test_a_client_key_sending_on_behalf_of_is_refused_unauthorized(
        self, delegation_mesh, delegation_keys
    ):
        """Alice's own key naming bob is UNAUTHORIZED; the handler never runs."""
        made, _ = delegation_keys
        seen = []
        self.start(delegation_mesh, made, seen)
        bob = public_key_of(made["bob"][0])

        with (
            delegation_mesh.transport(**curve_options(made, "alice")) as transport,
            pytest.raises(Unauthorized, match="gateway"),
        ):
            transport.call(WHOAMI, BalanceRequest(), on_behalf_of=bob)

        assert [] == seen

    def test_a_worker_not_told_of_the_gateway_refuses_it_too(
        self, delegation_mesh, delegation_keys
    ):
        """Without LATENTMAS_GATEWAY_KEYS no key may act for another: fail closed."""
        made, _ = delegation_keys
        seen = []
        self.start(delegation_mesh, made, seen, gateways=())
        alice = public_key_of(made["alice"][0])

        async def call_for_alice():
            async with delegation_mesh.async_transport(**curve_options(made, "gateway")) as t:
                return await t.call(WHOAMI, BalanceRequest(), on_behalf_of=alice)

        with pytest.raises(Unauthorized):
            asyncio.run(call_for_alice())

        assert [] == seen
