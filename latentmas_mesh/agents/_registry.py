"""The agent registry: one SQLite file in the state directory, plus the agents' key files."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from latentmas_mesh.agents._keys import KeyFolders, stage_key_pair, withdraw_public_key
from latentmas_mesh.agents._token import DIGEST_BYTES, issue_token, token_id_of, token_matches
from latentmas_mesh.agents._types import (
    GATEWAY_NAME,
    Agent,
    AgentExists,
    Enrolment,
    KeyPair,
    UnknownAgent,
    check_name,
)
from latentmas_mesh.agents.settings import AgentSettings

DATABASE_NAME: Final = "agents.db"
BUSY_TIMEOUT_MS: Final = 5_000
SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS agents (
    name TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL UNIQUE,
    operator INTEGER NOT NULL CHECK (operator IN (0, 1)),
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    token_id TEXT NOT NULL UNIQUE,
    token_sha256 BLOB NOT NULL CHECK (length(token_sha256) = {DIGEST_BYTES})
) STRICT;
"""
_SELECT: Final = "SELECT name, agent_id, operator, created_at_ms, revoked_at_ms"
_NO_DIGEST: Final = bytes(DIGEST_BYTES)
"""Compared against when a token's id is unknown, so that case costs what a wrong token does."""


def wall_clock_ms() -> int:
    """Milliseconds since the epoch: when an agent was created or revoked."""
    return time.time_ns() // 1_000_000


class AgentRegistry:
    """Agents by name, each with a CURVE key pair and a bearer token, in `state_dir`.

    `state_dir/agents.db` (SQLite, WAL, synchronous=FULL) holds the records; the keys are laid
    out as `state_dir/keys/clients/<name>.key` (the broker's client allow list) and
    `state_dir/keys/secrets/<name>.key_secret`. Every `authenticate` reads the database (no
    cache), so a revocation committed by any process, the CLI included, holds from the next
    call on. Writes take SQLite's one write lock first (BEGIN IMMEDIATE): two processes adding
    agents at once are serialised, key files included. Thread-safe.
    """

    def __init__(self, state_dir: Path, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.state_dir = state_dir
        self.keys = KeyFolders(state_dir / "keys")
        self._clock = clock
        self._lock = threading.RLock()  # held through a write: one transaction per connection
        state_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(state_dir / DATABASE_NAME),
            isolation_level=None,  # autocommit: each read sees the latest commit
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.executescript(SCHEMA)

    @classmethod
    def from_settings(cls, settings: AgentSettings | None = None) -> AgentRegistry:
        """The registry in `LATENTMAS_STATE_DIR` (default `./.latentmas-state`)."""
        return cls((settings or AgentSettings()).state_dir)

    def __enter__(self) -> AgentRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---------------------------------------------------------------------------------- writes

    def add(self, name: str, *, operator: bool = False) -> Enrolment:
        """A new agent: its key pair, its token (in the answer only) and its record.

        Raises InvalidAgentName, or AgentExists for a name held already (revoked or not). The
        public key reaches the broker's clients folder only after the record is committed, so a
        crash in between leaves an agent the broker does not admit, never a key with no agent.
        """
        check_name(name)
        issued = issue_token()
        with self._write() as undo:
            if self._row(name) is not None:
                raise AgentExists(f"agent {name!r} exists already", details={"name": name})
            staged = stage_key_pair(self.keys, name)
            undo.append(staged.discard)
            agent = Agent(name, staged.identity, operator, self._clock())
            self._db.execute(
                "INSERT INTO agents (name, agent_id, operator, created_at_ms, token_id, "
                "token_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                (name, agent.agent_id, int(operator), agent.created_at_ms,
                 issued.token_id, issued.digest),
            )  # fmt: skip
        keys = staged.publish()
        if self.get(name).revoked:  # revoked before the key was out: it must not stay out
            withdraw_public_key(self.keys, name)
        return Enrolment(agent, issued.token, keys)

    def revoke(self, name: str) -> Agent:
        """Revoke `name`: its token fails from the next `authenticate` in any process, and its
        public key leaves the broker's clients folder. Revoking twice keeps the first time (and
        removes the key again, should a crash have left it). UnknownAgent for a name not held.
        """
        with self._write():
            agent = self.get(name)
            if agent.revoked_at_ms is None:
                revoked_at_ms = self._clock()
                self._db.execute(
                    "UPDATE agents SET revoked_at_ms = ? WHERE name = ?", (revoked_at_ms, name)
                )
                agent = dataclasses.replace(agent, revoked_at_ms=revoked_at_ms)
        withdraw_public_key(self.keys, name)
        return agent

    def gateway_keys(self) -> KeyPair:
        """The gateway's own key pair, created on first use: the key it connects to the broker
        with (listed in the clients folder) and that workers must list in
        LATENTMAS_GATEWAY_KEYS to let it act on behalf of agents."""
        files = (self.keys.secret_file(GATEWAY_NAME), self.keys.public_file(GATEWAY_NAME))
        with self._write():  # two processes starting at once make one pair, not two
            if not all(path.exists() for path in files):  # none yet, or a crash cut one short
                return stage_key_pair(self.keys, GATEWAY_NAME).publish()
        return self.keys.key_pair(GATEWAY_NAME)

    # ----------------------------------------------------------------------------------- reads

    def authenticate(self, token: str) -> Agent | None:
        """The agent whose bearer token this is, or None: malformed, unknown, wrong or revoked.

        One indexed read of the latest commit (no cache: a revocation holds at once) and a
        constant-time digest comparison, made even when the id is unknown.
        """
        token_id = token_id_of(token)
        if token_id is None:
            return None
        with self._lock:
            row = self._db.execute(
                _SELECT + ", token_sha256 FROM agents WHERE token_id = ?", (token_id,)
            ).fetchone()
        digest = _NO_DIGEST if row is None else row[-1]
        if not token_matches(digest, token) or row is None:
            return None
        agent = _agent(row)
        return None if agent.revoked else agent

    def get(self, name: str) -> Agent:
        """The agent called `name` (revoked or not); UnknownAgent if there is none."""
        row = self._row(name)
        if row is None:
            raise UnknownAgent(f"no agent {name!r} in this registry", details={"name": name})
        return _agent(row)

    def agents(self) -> list[Agent]:
        """Every agent, revoked ones included, oldest first."""
        with self._lock:
            query = _SELECT + " FROM agents ORDER BY created_at_ms, name"
            rows = self._db.execute(query).fetchall()
        return [_agent(row) for row in rows]

    # ------------------------------------------------------------------------------- internals

    def _row(self, name: str) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(
                _SELECT + " FROM agents WHERE name = ?", (name,)
            ).fetchone()
        return row

    @contextmanager
    def _write(self) -> Iterator[list[Callable[[], None]]]:
        """One write transaction holding SQLite's write lock from its start (BEGIN IMMEDIATE)
        and this object's lock throughout (other threads share the connection), committed when
        the block ends. If the block or the commit fails, the undo steps the block appended
        run first, while no other writer can start, then the transaction is rolled back."""
        undo: list[Callable[[], None]] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield undo
                self._db.execute("COMMIT")
            except BaseException:
                for step in reversed(undo):
                    step()
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise


def _agent(row: tuple[Any, ...]) -> Agent:
    """An agent from a row of `_SELECT` (the STRICT schema guarantees the columns' types)."""
    name, agent_id, operator, created_at_ms, revoked_at_ms = row[:5]
    return Agent(name, agent_id, bool(operator), created_at_ms, revoked_at_ms)


__all__ = ["DATABASE_NAME", "AgentRegistry", "wall_clock_ms"]
