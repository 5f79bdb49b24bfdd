"""The published OpenAPI document: FastAPI's, with what the configuration and the routes add.

FastAPI derives the document from the request models; what it cannot see is stated here, so
that the document names every constraint the server enforces: the configured order limits,
the required ``Idempotency-Key`` header with its rules, the forms of a consistency token and
of a page cursor (optional, but never ``null`` when given), and the links from an operation's
response to the operations on the resource it created (which let a client, or a fuzzer,
follow an order from its creation through its transitions).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from gateway.api.routes import CONSISTENCY_HEADER, IDEMPOTENCY_HEADER
from gateway.api.webhooks import notification_schema
from gateway.configuration.settings import Settings
from gateway.postgres.tokens import TOKEN_PATTERN
from gateway.write_path.idempotency import KEY_PATTERN
from gateway.write_path.models import MAX_ITEMS_PER_REQUEST
from gateway.write_path.pages import CURSOR_PATTERN


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make ``app`` publish its document with the additions of :func:`complete_document`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_document(generate(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete_document(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``document`` with the configured limits, the idempotency header and the links."""
    schemas = document["components"]["schemas"]
    schemas["PaymentNotification"] = notification_schema()
    items = schemas["PlaceOrderRequest"]["properties"]["items"]
    items["maxItems"] = min(settings.orders.max_items, MAX_ITEMS_PER_REQUEST)
    schemas["OrderItemRequest"]["properties"]["quantity"]["maximum"] = settings.orders.max_quantity
    paths = document["paths"]
    for parameter in paths["/orders"]["post"].get("parameters", []):
        if parameter["name"] == IDEMPOTENCY_HEADER:
            parameter["required"] = True
            parameter["schema"] = {"type": "string", "pattern": KEY_PATTERN}
    shapes = {CONSISTENCY_HEADER: TOKEN_PATTERN, "cursor": CURSOR_PATTERN}
    for operations in paths.values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] in shapes:
                    described = parameter["schema"].get("description")
                    parameter["schema"] = {"type": "string", "pattern": shapes[parameter["name"]]}
                    if described:
                        parameter["schema"]["description"] = described
    _link(paths, ("/orders", "post", "201"), "order", "/orders/{order_id}", "order_id")
    _link(paths, ("/orders", "post", "200"), "order", "/orders/{order_id}", "order_id")
    _link(paths, ("/orders/{order_id}", "get", "200"), "order", "/orders/{order_id}", "order_id")
    _link(
        paths,
        ("/orders/{order_id}/transitions", "post", "200"),
        "order",
        "/orders/{order_id}",
        "order_id",
    )
    _link(
        paths,
        ("/customers", "post", "201"),
        "customer",
        "/customers/{customer_id}",
        "customer_id",
    )
    return document


def _link(
    paths: dict[str, Any],
    source: tuple[str, str, str],
    resource: str,
    prefix: str,
    parameter: str,
) -> None:
    """Link ``source``'s response to every operation under ``prefix``, its ``parameter``
    taken from the response's ``id``."""
    path, method, status = source
    response = paths[path][method]["responses"][status]
    links = response.setdefault("links", {})
    for target, operations in paths.items():
        if not target.startswith(prefix):
            continue
        for operation in operations.values():
            name = operation["operationId"]
            links[name] = {
                "operationId": name,
                "parameters": {parameter: "$response.body#/id"},
                "description": f"The {resource} this response describes.",
            }
