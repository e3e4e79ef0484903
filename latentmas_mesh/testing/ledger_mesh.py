"""A CURVE-secured local mesh with ledger workers, for integration tests, benchmarks and demos."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from latentmas_mesh.testing.mesh import LocalMesh
from latentmas_mesh.transport import Transport, TransportSettings, create_key_pair, public_key_of

WORKER_SERVICES = ("latentmas.ledger", "latentmas.align", "latentmas.wmatrix")
"""The services the net's one worker key may register for."""


@dataclass
class LedgerNet:
    """Key pairs for a broker, the ledger workers and named clients; a LocalMesh that uses them.

    Every client's identity (what the ledger charges) is its Z85 public key: `identity(name)`.
    `operators` and `services` name clients the ledger trusts to fund accounts or post/void
    others' reservations.
    """

    root: Path
    clients: tuple[str, ...]
    operators: tuple[str, ...] = ("operator",)
    services: tuple[str, ...] = ()
    ledger_url: str = ""
    workers: int = 1
    heartbeat_ms: int = 500
    extra_env: Mapping[str, str] = field(default_factory=dict)
    mesh: LocalMesh | None = None

    def __post_init__(self) -> None:
        keys = self.root / "keys"
        create_key_pair(keys / "broker", "broker")
        # Every worker of this net runs under one key (DIR/<service>/<name>.key, the broker's
        # layout): the ledger's, also listed for the services a test may start beside it.
        public, _ = create_key_pair(keys / "secrets", "worker")
        for service in WORKER_SERVICES:
            (keys / "workers" / service).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(public, keys / "workers" / service / "worker.key")
        for name in {*self.clients, *self.operators, *self.services}:
            create_key_pair(keys / "clients", name)
        self.ledger_url = self.ledger_url or f"sqlite:///{self.root.resolve() / 'ledger.db'}"

    def identity(self, name: str) -> str:
        """The Z85 public key of client `name`: its agent id at the ledger."""
        return public_key_of(self.root / "keys" / "clients" / f"{name}.key")

    def start(self) -> LocalMesh:
        keys = self.root / "keys"
        env = {
            "LATENTMAS_CURVE_SECRET_KEY_FILE": str(keys / "secrets" / "worker.key_secret"),
            "LATENTMAS_CURVE_SERVER_KEY_FILE": str(keys / "broker" / "broker.key"),
            "LATENTMAS_LEDGER_URL": self.ledger_url,
            "LATENTMAS_LEDGER_QUOTE_KEY_FILE": str(self.root / "quote.key"),
            "LATENTMAS_LEDGER_OPERATORS": json.dumps([self.identity(n) for n in self.operators]),
            "LATENTMAS_LEDGER_SERVICES": json.dumps([self.identity(n) for n in self.services]),
            "LATENTMAS_LOG_LEVEL": "warning",
            **self.extra_env,
        }
        broker_args = (
            "--curve-secret-key",
            str(keys / "broker" / "broker.key_secret"),
            "--curve-client-keys",
            str(keys / "clients"),
            "--curve-worker-keys",
            str(keys / "workers"),
        )
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.mesh = LocalMesh(
            {"ledger": self.workers},
            heartbeat_ms=self.heartbeat_ms,
            env=env,
            broker_args=broker_args,
            log_dir=self.root / "logs",
        )
        return self.mesh.start()

    def transport(self, name: str, **overrides: object) -> Transport:
        """A transport authenticated as client `name`."""
        if self.mesh is None:
            raise RuntimeError("start() the mesh first")
        keys = self.root / "keys"
        settings = TransportSettings.model_validate(
            {
                "broker_url": self.mesh.broker_url,
                "curve_secret_key_file": keys / "clients" / f"{name}.key_secret",
                "curve_server_key_file": keys / "broker" / "broker.key",
                **overrides,
            }
        )
        return Transport(settings)

    def stop(self) -> None:
        if self.mesh is not None:
            self.mesh.stop()
