"""The SQLite schema itself refuses what the code must never write: floats, text, negatives."""

from __future__ import annotations

import sqlite3

import pytest

from latentmas_mesh.errors import InternalError
from latentmas_mesh.ledger import AccountKind, Deposit, Settle, open_store
from latentmas_mesh.ledger._sql import sql_literal
from latentmas_mesh.ledger.sqlite import SqliteLedgerStore, connect


class TestStrictSchema:
    @pytest.mark.parametrize("bad", [1.5, "ten", b"\x01"])
    def test_amount_column_refuses_non_integers(self, tmp_path, bad):
        """STRICT INTEGER columns raise on a REAL, TEXT or BLOB value instead of storing it."""
        SqliteLedgerStore(tmp_path / "l.db").close()
        connection = connect(tmp_path / "l.db")

        with pytest.raises(sqlite3.IntegrityError):
            connection.execute("INSERT INTO accounts VALUES ('agent:x', 'agent', ?, 0)", (bad,))

    def test_non_funding_balance_below_zero_is_refused_by_the_schema(self, tmp_path):
        """The CHECK constraint is a second wall behind the code's own check."""
        SqliteLedgerStore(tmp_path / "l.db").close()
        connection = connect(tmp_path / "l.db")

        with pytest.raises(sqlite3.IntegrityError):
            connection.execute("UPDATE accounts SET balance_units = -1 WHERE kind = 'platform'")

    def test_ledger_survives_reopening(self, tmp_path):
        """Balances and recorded events are read back after closing and reopening the file."""
        store = SqliteLedgerStore(tmp_path / "l.db")
        store.apply(Deposit("d1", "alice", 10), now_ms=1)
        store.close()

        reopened = SqliteLedgerStore(tmp_path / "l.db")

        assert (10, True) == (
            reopened.balance_units("agent:alice"),
            reopened.apply(Deposit("d1", "alice", 10), now_ms=2).replayed,
        )

    def test_ledger_made_before_event_parties_gains_the_column(self, tmp_path):
        """An older file without `events.parties` opens; its events have no parties (operators
        only read their status) and new events record theirs."""
        store = SqliteLedgerStore(tmp_path / "l.db")
        store.apply(Deposit("d1", "alice", 10), now_ms=1)
        store.close()
        connect(tmp_path / "l.db").execute("ALTER TABLE events DROP COLUMN parties")

        reopened = SqliteLedgerStore(tmp_path / "l.db")
        reopened.apply(Deposit("d2", "bob", 10), now_ms=2)

        assert ((), ("bob",)) == tuple(
            record.parties
            for record in map(reopened.event_record, ("d1", "d2"))
            if record is not None
        )

    def test_journal_mode_is_wal_with_full_sync(self, tmp_path):
        """The durability pragmas are what the ledger promises."""
        SqliteLedgerStore(tmp_path / "l.db").close()
        connection = connect(tmp_path / "l.db")

        assert ("wal", 2) == (
            connection.execute("PRAGMA journal_mode").fetchone()[0],
            connection.execute("PRAGMA synchronous").fetchone()[0],
        )


class TestQueryPlans:
    def test_no_statement_of_a_batch_scans_the_whole_journal(self, tmp_path):
        """Every query a settlement batch runs reaches the journal by key or range, never by a
        full scan, so the cost of a commit does not grow with the ledger."""
        store = SqliteLedgerStore(tmp_path / "l.db")
        store.apply(Deposit("d1", "alice", 10**6), now_ms=1)
        store.apply(Deposit("d2", "bob", 1), now_ms=1)
        statements: list[str] = []
        store._connection.set_trace_callback(statements.append)
        store.apply_batch([Settle(f"s{i}", "alice", "bob", (), 10) for i in range(20)], now_ms=2)
        store._connection.set_trace_callback(None)
        explain = connect(tmp_path / "l.db")

        scans = [
            (sql, detail)
            for sql in statements
            if sql.startswith("SELECT") and "journal" in sql
            for *_, detail in explain.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            if detail.startswith("SCAN journal")
        ]

        assert [] == scans


class TestStoreUrl:
    def test_sqlite_urls_follow_the_sqlalchemy_convention(self, tmp_path, monkeypatch):
        """Three slashes are relative to the working directory, four are absolute."""
        monkeypatch.chdir(tmp_path)
        relative = open_store("sqlite:///rel/ledger.db")
        absolute = open_store(f"sqlite:///{tmp_path / 'abs.db'}")

        assert (tmp_path / "rel" / "ledger.db", tmp_path / "abs.db") == (
            relative.path.resolve(),
            absolute.path,
        )

    def test_malformed_sqlite_url_is_refused(self):
        """`sqlite://x` (two slashes) is ambiguous and refused."""
        with pytest.raises(ValueError, match="sqlite:///"):
            open_store("sqlite://ledger.db")


class TestSqlLiterals:
    def test_schema_accepts_every_account_kind_and_refuses_others(self, tmp_path):
        """The kind CHECK is rendered from AccountKind, so it lists exactly the enum's values."""
        SqliteLedgerStore(tmp_path / "l.db").close()
        connection = connect(tmp_path / "l.db")
        for kind in AccountKind:
            connection.execute("INSERT INTO accounts VALUES (?, ?, 0, 0)", (f"x:{kind}", kind))

        with pytest.raises(sqlite3.IntegrityError):
            connection.execute("INSERT INTO accounts VALUES ('x:other', 'other', 0, 0)")

    def test_text_that_would_need_quoting_never_becomes_sql(self):
        """Only plain lower-case names are rendered into queries; anything else is a bug."""
        with pytest.raises(InternalError):
            sql_literal("funding' OR '1'='1")
