"""The fast canonical forms of the busiest events hash exactly what the field-by-field form does."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from latentmas_mesh.ledger import Reserve, Settle, content_sha256
from latentmas_mesh.ledger._types import AnyEvent, canonical_form

ids = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True)
names = st.from_regex(r"[!-~]{1,20}", fullmatch=True)
validators = st.lists(names, max_size=4, unique=True).map(tuple)
amounts = st.integers(1, 10**12)
settlements = st.builds(Settle, ids, names, names, validators, amounts)
reservations = st.builds(Reserve, ids, names, names, validators, amounts, st.integers(0, 2**62))


def reference_sha256(event: AnyEvent) -> str:
    return hashlib.sha256(canonical_form(event).encode()).hexdigest()


class TestContentHash:
    @given(settlements | reservations)
    def test_fast_forms_hash_like_the_field_by_field_reference(self, event):
        """Settlements and reservations take an f-string form; their hash is the reference's."""
        assert reference_sha256(event) == content_sha256(event)

    def test_any_field_change_changes_the_hash(self):
        """Two settlements differing in one field only never share a hash."""
        base = Settle("s1", "alice", "bob", ("v1",), 10)
        variants = [
            Settle("s2", "alice", "bob", ("v1",), 10),
            Settle("s1", "alice2", "bob", ("v1",), 10),
            Settle("s1", "alice", "bob2", ("v1",), 10),
            Settle("s1", "alice", "bob", ("v1", "v2"), 10),
            Settle("s1", "alice", "bob", ("v1",), 11),
        ]

        assert len(variants) + 1 == len({content_sha256(e) for e in (base, *variants)})
