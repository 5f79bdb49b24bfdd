"""The advisory lock keys: one list, no key taken twice."""

from __future__ import annotations

from gateway.postgres.advisory_locks import AdvisoryLock


def test_every_advisory_lock_has_a_key_of_its_own() -> None:
    keys = [lock.value for lock in AdvisoryLock.__members__.values()]
    assert len(keys) == len(set(keys)) == 5
    # A key must fit PostgreSQL's bigint argument of pg_advisory_lock.
    assert all(0 < key < 2**63 for key in keys)
