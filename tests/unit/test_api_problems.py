"""The API's problems for sharded mode's conflicts that ask the client to send the request
again: each has its own type, so that a client can tell them from a conflict that stays."""

from __future__ import annotations

import uuid

from gateway.api.problems import TYPE_PREFIX, problem_of, problem_response
from gateway.errors import Conflict, RequestInProgress, ReservationLapsed


def test_a_lapsed_reservation_is_its_own_problem_asking_for_the_request_again() -> None:
    order_id = uuid.uuid4()
    problem = problem_of(ReservationLapsed(order_id))

    assert (problem.status, problem.kind) == (409, "reservation-lapsed")
    assert problem.headers == {"Retry-After": "1"}
    assert problem.extra == {"order_id": str(order_id)}
    assert "place it again" in problem.detail


def test_a_request_in_progress_is_its_own_problem_asking_for_the_request_again() -> None:
    problem = problem_of(RequestInProgress("key-1"))

    assert (problem.status, problem.kind) == (409, "request-in-progress")
    assert problem.headers == {"Retry-After": "1"}
    assert problem.extra == {"field": "Idempotency-Key"}


def test_another_conflict_stays_a_plain_conflict_without_retry_after() -> None:
    problem = problem_of(Conflict("the order is being moved"))

    assert (problem.status, problem.kind) == (409, "conflict")
    assert problem.headers == {}
    response = problem_response(None, problem)
    assert b'"type":"' + (TYPE_PREFIX + "conflict").encode() in response.body
