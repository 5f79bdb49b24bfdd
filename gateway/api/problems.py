"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns has ``type``, ``title``, ``status``, ``detail`` and ``instance``;
validation problems add ``errors``, a list of ``{"field", "message"}``. A 500 says only that
something failed and gives an ``error_id`` that is also in the server's log, never the cause.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import (
    AlreadyExists,
    Conflict,
    CustomerMoving,
    FieldError,
    GatewayError,
    IdempotencyConflict,
    IllegalTransition,
    InsufficientInventory,
    NotFound,
    RequestInProgress,
    ReservationLapsed,
    ValidationError,
    VersionConflict,
)
from gateway.postgres.database import (
    UNAVAILABILITY_ERRORS,
    DatabaseUnavailable,
    is_unavailability,
)
from gateway.write_path.order_status import ALLOWED_TRANSITIONS, OrderStatus
from gateway.write_path.validation import field_path

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:fanout:problem:"

log = logging.getLogger("gateway.api")


class Problem(Exception):
    """An error response raised by the API's own code (outside the gateway's errors)."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def problem_response(request: Request | None, problem: Problem) -> JSONResponse:
    """The JSON response of ``problem``."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + problem.kind,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(problem.extra)
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def field_errors(errors: list[FieldError]) -> dict[str, Any]:
    """The ``errors`` member of a validation problem."""
    return {"errors": [{"field": e.field, "message": e.message} for e in errors]}


def validation_problem(errors: list[FieldError]) -> Problem:
    """422: the request is well-formed JSON but some fields are invalid."""
    fields = ", ".join(dict.fromkeys(e.field for e in errors))
    return Problem(
        422,
        "validation-error",
        "Invalid request",
        f"invalid field{'s' if len(errors) > 1 else ''}: {fields}",
        extra=field_errors(errors),
    )


def problem_of(error: GatewayError) -> Problem:
    """The problem for one of the gateway's own errors."""
    match error:
        case ValidationError():
            return validation_problem(error.errors)
        case NotFound(field=str(field)):
            # A request refers to something that does not exist: the field is at fault.
            return validation_problem([FieldError(field, str(error))])
        case NotFound():
            return Problem(404, "not-found", "Not found", str(error))
        case IllegalTransition():
            allowed = sorted(s.value for s in ALLOWED_TRANSITIONS[OrderStatus(error.from_status)])
            # The request is well formed; the order's current status forbids it: a conflict
            # with the state of the resource.
            return Problem(
                409,
                "illegal-transition",
                "Illegal status transition",
                str(error),
                extra={
                    "rule": "order status state machine",
                    "from_status": error.from_status,
                    "to_status": error.to_status,
                    "allowed": allowed,
                },
            )
        case VersionConflict():
            return Problem(
                409,
                "version-conflict",
                "Version conflict",
                str(error),
                extra={
                    "field": "expected_version",
                    "expected_version": error.expected,
                    "current_version": error.actual,
                },
            )
        case IdempotencyConflict():
            return Problem(
                409,
                "idempotency-key-reused",
                "Idempotency key reused",
                str(error),
                extra={"field": "Idempotency-Key"},
            )
        case AlreadyExists():
            return Problem(
                409, "already-exists", "Already exists", str(error), extra={"field": error.field}
            )
        case InsufficientInventory():
            return Problem(
                409,
                "insufficient-inventory",
                "Insufficient inventory",
                str(error),
                extra={
                    "product_id": str(error.product_id),
                    "requested": error.requested,
                    "available": error.available,
                },
            )
        case ReservationLapsed():
            # Nothing was written: the same request, with its key, places the order.
            return Problem(
                409,
                "reservation-lapsed",
                "Reservation lapsed",
                str(error),
                extra={"order_id": str(error.order_id)},
                headers={"Retry-After": "1"},
            )
        case RequestInProgress():
            return Problem(
                409,
                "request-in-progress",
                "Request in progress",
                str(error),
                extra={"field": "Idempotency-Key"},
                headers={"Retry-After": "1"},
            )
        case CustomerMoving():
            return Problem(
                409,
                "customer-moving",
                "Customer moving",
                str(error),
                extra={"customer_id": str(error.customer_id)},
                headers={"Retry-After": "1"},
            )
        case Conflict():
            return Problem(409, "conflict", "Conflict", str(error))
        case DatabaseUnavailable():
            return database_unavailable()
    return internal_error(error)


def malformed_json() -> Problem:
    """400: the request body is not JSON."""
    return Problem(400, "malformed-json", "Malformed JSON", "the request body is not JSON")


def database_unavailable() -> Problem:
    """503: PostgreSQL cannot be reached now; the client should retry after a second."""
    return Problem(
        503,
        "database-unavailable",
        "Database unavailable",
        "PostgreSQL cannot be reached; try again shortly",
        headers={"Retry-After": "1"},
    )


def body_too_large(max_bytes: int) -> Problem:
    """413: the request body is over ``api.max_body_bytes``."""
    return Problem(
        413,
        "request-body-too-large",
        "Request body too large",
        f"the request body exceeds {max_bytes} bytes",
        extra={"max_bytes": max_bytes},
    )


def internal_error(error: BaseException) -> Problem:
    """500, logged with an id; the response holds only the id."""
    error_id = uuid.uuid4().hex
    log.error("internal error %s", error_id, exc_info=error)
    return Problem(
        500,
        "internal-error",
        "Internal error",
        "the request failed on the server; it has been logged",
        extra={"error_id": error_id},
    )


def _request_validation_problem(error: RequestValidationError) -> Problem:
    errors = list(error.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return malformed_json()
    fields: list[FieldError] = []
    for e in errors:
        location = tuple(e.get("loc", ()))
        source = location[0] if location else "body"
        path = location[1:] if source in {"body", "path", "query", "header"} else location
        if source == "body" and not path and e.get("type") == "missing":
            fields.append(FieldError("(body)", "a JSON body is required"))
            continue
        name = field_path(path) if path else "(body)"
        fields.append(FieldError(name, str(e.get("msg", "invalid"))))
    return validation_problem(fields)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` a problem-details response."""

    async def on_problem(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, Problem)
        return problem_response(request, error)

    async def on_gateway_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, GatewayError)
        return problem_response(request, problem_of(error))

    async def on_request_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return problem_response(request, _request_validation_problem(error))

    async def on_http_exception(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        titles = {404: "Not found", 405: "Method not allowed", 413: "Request body too large"}
        title = titles.get(error.status_code, "HTTP error")
        kind = title.lower().replace(" ", "-")
        headers = dict(error.headers or {})
        return problem_response(
            request, Problem(error.status_code, kind, title, str(error.detail), headers=headers)
        )

    async def on_unavailable(request: Request, error: Exception) -> JSONResponse:
        log.warning("PostgreSQL unavailable: %r", error)
        return problem_response(request, database_unavailable())

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        if is_unavailability(error):
            return await on_unavailable(request, error)
        return problem_response(request, internal_error(error))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    # Handled by type, not by the catch-all: Starlette re-raises what the catch-all handled,
    # and uvicorn then logs it as an error and closes the client's kept-alive connection.
    for unavailability in UNAVAILABILITY_ERRORS:
        app.add_exception_handler(unavailability, on_unavailable)
    app.add_exception_handler(Exception, on_unexpected)
