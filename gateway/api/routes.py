"""The API's resources: orders, their transitions, customers and products."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from uuid import UUID

from annotated_types import Ge
from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from pydantic import BaseModel, BeforeValidator, ConfigDict

from gateway.api.metrics import ORDER_TRANSITIONS, ORDERS_PLACED, ORDERS_REPLAYED
from gateway.api.problems import PROBLEM_JSON, Problem, database_unavailable
from gateway.errors import NotFound, ValidationError
from gateway.facade.gateway import Gateway
from gateway.history.store import OrderEvent
from gateway.write_path import idempotency
from gateway.write_path.models import (
    Address,
    AddressRequest,
    Customer,
    CustomerRequest,
    Order,
    OrderPage,
    PlaceOrderRequest,
    Product,
    ProductRequest,
    StoredRecord,
    json_integer,
)
from gateway.write_path.order_status import OrderStatus
from gateway.write_path.pages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
CONSISTENCY_HEADER = "Fanout-Consistency-Token"

ConsistencyToken = Annotated[
    str | None,
    Header(
        alias=CONSISTENCY_HEADER,
        description=(
            "The token a write returned in this header: the read then sees that write "
            "(read-your-writes), from a replica that has it or from the primary."
        ),
    ),
]


def set_consistency_token(response: Response, record: StoredRecord) -> None:
    """Hand the client the token of the write that returned ``record`` (replicas configured)."""
    if record.consistency_token is not None:
        response.headers[CONSISTENCY_HEADER] = record.consistency_token


@contextmanager
def header_field(name: str, field: str) -> Iterator[None]:
    """Name the header (not the Python argument) in a validation error about ``field``."""
    try:
        yield
    except ValidationError as error:
        if error.field != field:
            raise
        raise ValidationError.single(name, error.errors[0].message) from None


class TransitionRequest(BaseModel):
    """A status change, optionally guarded by the version the caller last saw."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: OrderStatus
    expected_version: Annotated[int, Ge(1), BeforeValidator(json_integer)] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these problem statuses."""
    descriptions = {
        400: "Malformed JSON, or (POST /orders) a missing Idempotency-Key header",
        401: "Missing or wrong API key",
        404: "No such resource",
        409: "Conflicts with the current state",
        413: "Request body too large",
        415: "The body is not declared as application/json",
        422: "A field or rule is violated (named in the problem)",
        503: "PostgreSQL cannot be reached now; retry after Retry-After seconds",
    }
    return {
        code: {"description": descriptions[code], "content": {PROBLEM_JSON: {}}}
        for code in statuses
    }


@contextmanager
def path_resource(entity: str) -> Iterator[None]:
    """Make the gateway's ``NotFound`` of the resource named by the path a 404."""
    try:
        yield
    except NotFound as error:
        if error.entity != entity:
            raise
        raise Problem(404, "not-found", "Not found", str(error)) from None


async def require_json(request: Request) -> None:
    """Answer 415 to a request body that is not declared as JSON."""
    if request.method not in {"POST", "PUT", "PATCH"}:
        return
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"the request body must be application/json, not {media_type or 'undeclared'}",
            extra={"field": "Content-Type"},
        )


def gateway_of(request: Request) -> Gateway:
    """The gateway the app was started with (a dependency of every route that reads or writes
    the database, which answers 503 while PostgreSQL cannot be reached)."""
    gateway: Gateway | None = request.app.state.connection.gateway
    if gateway is None:
        raise database_unavailable()
    return gateway


UsesGateway = Annotated[Gateway, Depends(gateway_of)]


router = APIRouter(dependencies=[Depends(require_json)])


@router.post(
    "/orders",
    status_code=status.HTTP_201_CREATED,
    response_model=Order,
    responses={
        200: {"description": "A replay of an earlier request with the same key"},
        **problem_responses(400, 409, 413, 415, 422, 503),
    },
    tags=["orders"],
)
async def place_order(
    body: PlaceOrderRequest,
    gateway: UsesGateway,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            description="Required. The same key with the same body returns the same order.",
        ),
    ] = None,
) -> Order:
    """Place an order: 201 when created, 200 when the key was already used for this body."""
    if idempotency_key is None:
        raise Problem(
            400,
            "idempotency-key-missing",
            "Idempotency-Key required",
            f"POST /orders needs an {IDEMPOTENCY_HEADER} header",
            extra={"field": IDEMPOTENCY_HEADER},
        )
    with header_field(IDEMPOTENCY_HEADER, "idempotency_key"):
        key = idempotency.validate_key(idempotency_key)
    placed = await gateway.place_order_once(body, idempotency_key=key)
    response.headers["Location"] = f"/orders/{placed.order.id}"
    set_consistency_token(response, placed.order)
    if placed.replayed:
        ORDERS_REPLAYED.inc()
        response.status_code = status.HTTP_200_OK
        response.headers[REPLAYED_HEADER] = "true"
    else:
        ORDERS_PLACED.inc()
    return placed.order


@router.get(
    "/orders/{order_id}",
    response_model=Order,
    responses=problem_responses(404, 422, 503),
    tags=["orders"],
)
async def get_order(
    order_id: UUID, gateway: UsesGateway, consistency_token: ConsistencyToken = None
) -> Order:
    """The order, read from a replica when replicas are configured (one that has the write
    of the ``Fanout-Consistency-Token`` given, else the primary)."""
    with path_resource("order"), header_field(CONSISTENCY_HEADER, "consistency_token"):
        return await gateway.get_order(order_id, consistency_token=consistency_token)


class OrderHistory(BaseModel):
    """An order's events, its whole history, oldest first."""

    order_id: UUID
    events: list[OrderEvent]


@router.get(
    "/orders/{order_id}/events",
    response_model=OrderHistory,
    responses=problem_responses(404, 422, 503),
    tags=["orders"],
)
async def order_events(
    order_id: UUID, gateway: UsesGateway, consistency_token: ConsistencyToken = None
) -> OrderHistory:
    """The order's events in version order (read like GET /orders/{id})."""
    with path_resource("order"), header_field(CONSISTENCY_HEADER, "consistency_token"):
        events = await gateway.order_events(order_id, consistency_token=consistency_token)
    return OrderHistory(order_id=order_id, events=events)


@router.post(
    "/orders/{order_id}/transitions",
    response_model=Order,
    responses=problem_responses(400, 404, 409, 413, 415, 422, 503),
    tags=["orders"],
)
async def transition_order(
    order_id: UUID, body: TransitionRequest, gateway: UsesGateway, response: Response
) -> Order:
    """Move the order to a new status: 409 on a stale ``expected_version``, 422 if illegal."""
    with path_resource("order"):
        order = await gateway.transition(
            order_id, body.status, expected_version=body.expected_version
        )
    ORDER_TRANSITIONS.labels(order.status.value).inc()
    set_consistency_token(response, order)
    return order


@router.post(
    "/customers",
    status_code=status.HTTP_201_CREATED,
    response_model=Customer,
    responses=problem_responses(400, 409, 413, 415, 422, 503),
    tags=["customers"],
)
async def create_customer(
    body: CustomerRequest, gateway: UsesGateway, response: Response
) -> Customer:
    """Create a customer with its addresses; 409 when the email is taken."""
    customer = await gateway.create_customer(body)
    response.headers["Location"] = f"/customers/{customer.id}"
    set_consistency_token(response, customer)
    return customer


@router.get(
    "/customers/{customer_id}/orders",
    response_model=OrderPage,
    responses=problem_responses(404, 422, 503),
    tags=["customers"],
)
async def customer_orders(
    customer_id: UUID,
    request: Request,
    gateway: UsesGateway,
    response: Response,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="Orders per page, newest first.")
    ] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None,
        Query(description="The next_cursor of the previous page."),
    ] = None,
    consistency_token: ConsistencyToken = None,
) -> OrderPage:
    """The customer's orders, newest first, a page at a time (read like GET /orders/{id})."""
    with (
        path_resource("customer"),
        header_field(CONSISTENCY_HEADER, "consistency_token"),
        header_field("cursor", "before"),
    ):
        page = await gateway.customer_orders(
            customer_id, limit=limit, before=cursor, consistency_token=consistency_token
        )
    if page.next_cursor is not None:
        following = request.url.include_query_params(cursor=page.next_cursor, limit=limit)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return page


@router.post(
    "/customers/{customer_id}/addresses",
    status_code=status.HTTP_201_CREATED,
    response_model=Address,
    responses=problem_responses(400, 404, 413, 415, 422, 503),
    tags=["customers"],
)
async def add_address(
    customer_id: UUID, body: AddressRequest, gateway: UsesGateway, response: Response
) -> Address:
    """Add a billing or shipping address to a customer."""
    with path_resource("customer"):
        address = await gateway.add_address(customer_id, body)
    set_consistency_token(response, address)
    return address


@router.post(
    "/products",
    status_code=status.HTTP_201_CREATED,
    response_model=Product,
    responses=problem_responses(400, 409, 413, 415, 422, 503),
    tags=["products"],
)
async def create_product(body: ProductRequest, gateway: UsesGateway) -> Product:
    """Create a product with its price and initial stock."""
    return await gateway.create_product(body)
