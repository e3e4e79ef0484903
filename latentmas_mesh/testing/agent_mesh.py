"""A local mesh for the agents of a registry: CURVE broker, ledger, align and wmatrix workers,
and the HTTP gateway, all on loopback (`latentmas up --http-port`, the gateway's tests)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from latentmas_mesh.agents import AgentRegistry, KeyFolders
from latentmas_mesh.protocol.ledger import LEDGER_SERVICE
from latentmas_mesh.testing.ledger_mesh import LedgerNet
from latentmas_mesh.testing.mesh import START_TIMEOUT_S, LocalMesh

MESH_KEYS: Final = "mesh"
"""The broker's and workers' own keys, under the state directory (the agents' are in keys/)."""
WORKERS_DEFAULT: Final = {"align": 1, "wmatrix": 1, "market": 1}


@dataclass
class AgentMesh:
    """Every process an agent's HTTP or SDK call needs, for the agents of `state_dir`.

    The broker admits the registry's keys (keys/clients, re-read as agents come and go), the
    workers let only the registry's gateway key act on behalf of agents, and the ledger trusts
    the registry's operators as they are at start (an operator added later is one at the
    gateway at once, at the ledger from the next start).
    """

    state_dir: Path
    workers: Mapping[str, int] = field(default_factory=lambda: dict(WORKERS_DEFAULT))
    ledger_workers: int = 1
    heartbeat_ms: int = 500
    http_port: int = 0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    net: LedgerNet | None = None

    @property
    def mesh(self) -> LocalMesh:
        if self.net is None or self.net.mesh is None:
            raise RuntimeError("start() the mesh first")
        return self.net.mesh

    def start(self, timeout_s: float = START_TIMEOUT_S) -> LocalMesh:
        with AgentRegistry(self.state_dir) as registry:
            gateway = registry.gateway_keys()
            operators = tuple(
                agent.agent_id
                for agent in registry.agents()
                if agent.operator and not agent.revoked
            )
            clients = registry.keys.clients
        root = self.state_dir / MESH_KEYS
        root.mkdir(parents=True, exist_ok=True)
        env = {"LATENTMAS_STATE_DIR": str(self.state_dir.resolve()), **self.extra_env}
        self.net = LedgerNet(
            root, clients=(), operators=(), workers=self.ledger_workers,
            heartbeat_ms=self.heartbeat_ms, extra_env=env, client_keys_dir=clients,
            operator_ids=operators, gateway_ids=(gateway.identity,),
        )  # fmt: skip
        # the align and market workers post what they sell
        self.net.service_ids = (
            self.net.worker_identity("align"),
            self.net.worker_identity("market"),
        )
        mesh = self.net.start()
        try:
            for kind, count in self.workers.items():
                for _ in range(count):
                    mesh.start_worker(kind)
            mesh.wait_for_workers(self.ledger_workers + sum(self.workers.values()), timeout_s)
            mesh.start_gateway(mesh.env, timeout_s, http_port=self.http_port)
        except BaseException:
            mesh.stop()
            raise
        return mesh

    @staticmethod
    def client_files(state_dir: Path, name: str) -> tuple[Path, Path, Path]:
        """(agent `name`'s secret key, the broker's public key, the ledger keys folder): what
        an SDK client of this mesh connects with as that agent (`MeshKeys`)."""
        keys = state_dir / MESH_KEYS / "keys"
        secret = KeyFolders(state_dir / "keys").secret_file(name)
        return secret, keys / "broker" / "broker.key", keys / "workers" / LEDGER_SERVICE

    def stop(self) -> None:
        if self.net is not None:
            self.net.stop()

    def __enter__(self) -> LocalMesh:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["MESH_KEYS", "AgentMesh"]
