"""How many guarded upserts the MongoDB sink puts in one request, by server."""

from __future__ import annotations

from adapters.mongo import FERRETDB_UPDATES_PER_REQUEST, update_request_limit

MONGODB_BUILD_INFO = {"version": "7.0.14", "ok": 1.0}
FERRETDB_BUILD_INFO = {"version": "7.0.77", "ferretdbVersion": "v1.24.0", "ok": 1.0}


def test_mongodb_takes_the_configured_bulk_size() -> None:
    assert update_request_limit(MONGODB_BUILD_INFO, 1_000) == 1_000
    assert update_request_limit(MONGODB_BUILD_INFO, 5) == 5


def test_ferretdb_takes_at_most_its_own_limit() -> None:
    assert update_request_limit(FERRETDB_BUILD_INFO, 1_000) == FERRETDB_UPDATES_PER_REQUEST
    assert update_request_limit(FERRETDB_BUILD_INFO, 3) == 3
