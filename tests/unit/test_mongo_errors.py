"""Which MongoDB errors the relay retries and which it dead-letters."""

from __future__ import annotations

from pymongo.errors import AutoReconnect, OperationFailure

from adapters.base import Outcome
from adapters.mongo import classify


def test_errors_a_retry_can_outlive_are_transient() -> None:
    # InternalError (1): what FerretDB answers while its PostgreSQL backend is down.
    for code in (1, 91, 11600, 189):
        assert classify(OperationFailure("failed", code)).outcome is Outcome.TRANSIENT, code
    assert classify(AutoReconnect("connection reset")).outcome is Outcome.TRANSIENT
    labelled = OperationFailure("failed", 112, {"errorLabels": ["RetryableWriteError"]})
    assert classify(labelled).outcome is Outcome.TRANSIENT


def test_errors_about_the_write_itself_are_permanent() -> None:
    for code in (2, 14, 17280):  # BadValue, TypeMismatch, KeyTooLong
        assert classify(OperationFailure("refused", code)).outcome is Outcome.PERMANENT, code
