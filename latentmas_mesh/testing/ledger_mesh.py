"""A CURVE-secured local mesh with ledger workers, for integration tests, benchmarks and demos."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from latentmas_mesh.protocol.ledger import LEDGER_SERVICE
from latentmas_mesh.testing.mesh import LocalMesh
from latentmas_mesh.transport import (
    Transport,
    TransportSettings,
    create_key_pair,
    list_worker_key,
    public_key_of,
)

WORKER_SERVICES: Mapping[str, str] = {
    "ledger": LEDGER_SERVICE,
    "align": "latentmas.align",
    "wmatrix": "latentmas.wmatrix",
    "market": "latentmas.market",
}
"""Worker kind -> the one service its own key is listed for (the broker's DIR/<service>/)."""


@dataclass
class LedgerNet:
    """Key pairs for a broker, one per worker kind and named clients; a LocalMesh that uses them.

    Every client's identity (what the ledger charges) is its Z85 public key: `identity(name)`.
    `operators` and `services` name clients the ledger trusts to fund accounts or post/void
    others' reservations. Each worker kind runs under its own key, listed only for its own
    service, so an align worker can neither register as the ledger nor seal ledger answers;
    clients trust the ledger keys in `ledger_keys_dir`, the broker's folder for the ledger.
    """

    root: Path
    clients: tuple[str, ...]
    operators: tuple[str, ...] = ("operator",)
    services: tuple[str, ...] = ()
    ledger_url: str = ""
    workers: int = 1
    heartbeat_ms: int = 500
    extra_env: Mapping[str, str] = field(default_factory=dict)
    client_keys_dir: Path | None = None
    """The broker's allow list of clients (an agent registry's keys/clients); by default the
    net's own folder of the named clients' keys."""
    operator_ids: tuple[str, ...] = ()
    """Identities trusted as operators besides the named operators (a registry's)."""
    gateway_ids: tuple[str, ...] = ()
    """Keys the workers let act on behalf of agents (LATENTMAS_GATEWAY_KEYS)."""
    service_ids: tuple[str, ...] = ()
    """Identities trusted as platform services besides the named ones (e.g. a worker's key)."""
    mesh: LocalMesh | None = None

    def __post_init__(self) -> None:
        keys = self.root / "keys"
        create_key_pair(keys / "broker", "broker")
        for kind, service in WORKER_SERVICES.items():
            public, _ = create_key_pair(keys / "secrets", kind)
            list_worker_key(public, keys / "workers", service)
        for name in {*self.clients, *self.operators, *self.services}:
            create_key_pair(keys / "clients", name)
        self.ledger_url = self.ledger_url or f"sqlite:///{self.root.resolve() / 'ledger.db'}"

    @property
    def ledger_keys_dir(self) -> Path:
        """The ledger workers' public keys: what clients trust ledger answers from."""
        return self.root / "keys" / "workers" / LEDGER_SERVICE

    def identity(self, name: str) -> str:
        """The Z85 public key of client `name`: its agent id at the ledger."""
        return public_key_of(self.root / "keys" / "clients" / f"{name}.key")

    def worker_identity(self, kind: str) -> str:
        """The Z85 public key workers of `kind` connect with (list it in LEDGER_SERVICES)."""
        return public_key_of(self.root / "keys" / "secrets" / f"{kind}.key")

    def start(self) -> LocalMesh:
        keys = self.root / "keys"
        env = {
            "LATENTMAS_CURVE_SERVER_KEY_FILE": str(keys / "broker" / "broker.key"),
            "LATENTMAS_LEDGER_KEYS_DIR": str(self.ledger_keys_dir),
            "LATENTMAS_LEDGER_URL": self.ledger_url,
            "LATENTMAS_LEDGER_QUOTE_KEY_FILE": str(self.root / "quote.key"),
            "LATENTMAS_LEDGER_OPERATORS": json.dumps(
                [*(self.identity(n) for n in self.operators), *self.operator_ids]
            ),
            "LATENTMAS_GATEWAY_KEYS": json.dumps(list(self.gateway_ids)),
            "LATENTMAS_LEDGER_SERVICES": json.dumps(
                [*(self.identity(n) for n in self.services), *self.service_ids]
            ),
            "LATENTMAS_LOG_LEVEL": "warning",
            **self.extra_env,
        }
        worker_env = {
            kind: {"LATENTMAS_CURVE_SECRET_KEY_FILE": str(keys / "secrets" / f"{kind}.key_secret")}
            for kind in WORKER_SERVICES
        }
        broker_args = (
            "--curve-secret-key",
            str(keys / "broker" / "broker.key_secret"),
            "--curve-client-keys",
            str(self.client_keys_dir or keys / "clients"),
            "--curve-worker-keys",
            str(keys / "workers"),
        )
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.mesh = LocalMesh(
            {"ledger": self.workers},
            heartbeat_ms=self.heartbeat_ms,
            env=env,
            worker_env=worker_env,
            broker_args=broker_args,
            log_dir=self.root / "logs",
        )
        return self.mesh.start()

    def transport(self, name: str, **overrides: object) -> Transport:
        """A transport authenticated as client `name`, trusting the net's ledger keys."""
        if self.mesh is None:
            raise RuntimeError("start() the mesh first")
        keys = self.root / "keys"
        settings = TransportSettings.model_validate(
            {
                "broker_url": self.mesh.broker_url,
                "curve_secret_key_file": keys / "clients" / f"{name}.key_secret",
                "curve_server_key_file": keys / "broker" / "broker.key",
                "ledger_keys_dir": self.ledger_keys_dir,
                **overrides,
            }
        )
        return Transport(settings)

    def stop(self) -> None:
        if self.mesh is not None:
            self.mesh.stop()
