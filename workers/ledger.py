"""The `ledger` worker kind: the `latentmas.ledger` service on the shared worker base."""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence

import zmq
from pydantic import BaseModel

from latentmas_mesh import codec
from latentmas_mesh.codec import Decoded
from latentmas_mesh.errors import ProtocolError
from latentmas_mesh.ledger import open_store
from latentmas_mesh.ledger.sweeper import ReservationSweeper
from latentmas_mesh.market import PriceSchedule
from latentmas_mesh.protocol.ledger import LEDGER_SERVICE
from latentmas_mesh.services.ledger import LedgerPolicy, LedgerService
from latentmas_mesh.services.ledger_settings import LedgerSettings
from latentmas_mesh.transport import ReplySealer
from workers.base import Frame, RawWorker, RequestContext, Worker
from workers.settings import WorkerSettings

SERVICE = LEDGER_SERVICE
GC_GEN0_THRESHOLD = 10_000


def wall_clock_ms() -> int:
    """Milliseconds since the epoch: reservation deadlines and quotes are wall-clock times."""
    return time.time_ns() // 1_000_000


def build_service(ledger: LedgerSettings) -> LedgerService:
    """The service over the configured store (SQLite file or PostgreSQL URL)."""
    store = open_store(ledger.ledger_url, now_ms=wall_clock_ms())
    policy = LedgerPolicy(
        quote_key=ledger.quote_key(),
        currency=ledger.ledger_currency,
        quote_ttl_ms=ledger.ledger_quote_ttl_ms,
        services=ledger.ledger_services,
        operators=ledger.ledger_operators,
        open_deposits=ledger.ledger_open_deposits,
        schedule=PriceSchedule(tokens_cap=ledger.ledger_tokens_cap),
    )
    return LedgerService(store, policy, clock=wall_clock_ms)


class LedgerWorker(Worker):
    """The ledger's worker loop with the reservation sweeper running beside it: expired
    reservations are released every `LATENTMAS_LEDGER_SWEEP_INTERVAL_MS` even when no request
    comes (the store serialises the two threads with its lock).

    With a `sealer` (CURVE on) every reply, errors included, ends in one extra body frame: the
    seal of `latentmas_mesh.transport.ReplySealer`, this worker's public key and an HMAC of the
    request id and the reply's frames under a key only this worker and the client share. The
    SDK's LedgerClient strips and checks it before decoding, so an answer the broker or another
    worker forged is refused, whatever it says.
    """

    def __init__(
        self,
        service: LedgerService,
        sweeper: ReservationSweeper,
        settings: WorkerSettings,
        *,
        sealer: ReplySealer | None = None,
    ) -> None:
        super().__init__(SERVICE, self._handle, settings)
        self.ledger = service
        self.sweeper = sweeper
        self.sealer = sealer
        self._codec_limits = codec.CodecLimits.from_settings(self.settings)
        # the id `_handle` decoded for the `call` now running (both run on the handler thread)
        self._decoded_request_id: str | None = None

    def _handle(self, request: Decoded, context: RequestContext) -> BaseModel:
        self._decoded_request_id = request.request_id
        return self.ledger.handle(request.message, context.identity)

    def call(self, body: list[zmq.Frame], context: RequestContext) -> Sequence[Frame]:
        """The handler's reply frames, sealed to the client that asked (when there is a sealer).

        The request id comes from the decode the handler already did: peeking it again would
        unpack the whole header, ~0.6 ms for a batch of 1,024 events. Only a request that
        failed to decode is peeked at (best effort, as its error reply is addressed).
        """
        self._decoded_request_id = None
        reply = super().call(body, context)
        if self.sealer is None:
            return reply
        request_id = self._decoded_request_id or codec.request_id_of(
            body, limits=self._codec_limits
        )
        return self.sealer.seal(context.identity, request_id or "", reply)

    def refusal(self, error: ProtocolError, context: RequestContext) -> Sequence[Frame]:
        """A refused request's error, sealed like every other reply."""
        reply = super().refusal(error, context)
        if self.sealer is None:
            return reply
        return self.sealer.seal(context.identity, context.request_id or "", reply)

    def run(self) -> None:
        # A batch of 1,024 settlements makes ~100k short-lived, acyclic objects: at the default
        # gen0 threshold (700) that is ~25 collections per batch, which found nothing to free and
        # cost ~2 us per settlement (~5% of the worker) when measured. Collections still run.
        gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
        self.sweeper.start()
        try:
            super().run()
        finally:
            self.sweeper.stop()


def create(settings: WorkerSettings) -> RawWorker:
    """A ledger worker. Its own options come from `LATENTMAS_LEDGER_*` (see LedgerSettings).

    The payer of every event is `context.identity`, the CURVE key the broker authenticated.
    Under CURVE its replies are sealed with the key it connects with; clients trust it when its
    public key is among their LATENTMAS_LEDGER_KEYS_DIR files. Without CURVE nothing is sealed.
    """
    ledger = LedgerSettings()
    service = build_service(ledger)
    sweeper = ReservationSweeper(
        service.store, clock=wall_clock_ms, interval_ms=ledger.ledger_sweep_interval_ms
    )
    secret = settings.curve_secret_key_file
    sealer = None if secret is None else ReplySealer(secret)
    return LedgerWorker(service, sweeper, settings, sealer=sealer)


__all__ = ["SERVICE", "LedgerWorker", "build_service", "create", "wall_clock_ms"]
