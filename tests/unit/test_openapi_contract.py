"""The OpenAPI document lists, for every route, every status the route can answer, derived
from what the route is built of (its dependencies and parameters): no I/O."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from gateway.api.app import create_app
from gateway.api.auth import ApiKeyCheck
from gateway.api.routes import gateway_of, require_json
from gateway.configuration.settings import Settings

KEY = "an-api-key-0123456789"
WEBHOOK_SECRET = "a-webhook-secret-0123456789"


def app_with(**api: Any) -> FastAPI:
    return create_app(
        Settings.model_validate(
            {
                "postgres": {"url": "postgresql://u@db.example/orders"},
                "api": api,
                "payments": {"webhook_secret": [WEBHOOK_SECRET]},
            }
        )
    )


def dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from dependants(sub)


def api_routes(app: FastAPI) -> list[Any]:
    """Every route of the API as the app serves it (with the dependencies it was included
    with), as FastAPI builds the document from."""
    return [
        context
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and context.include_in_schema
    ]


def possible_statuses(route: Any) -> set[str]:
    """What the route's parts can answer besides its success."""
    parts = list(dependants(route.dependant))
    calls = [part.call for part in parts]
    statuses: set[str] = set()
    if any(isinstance(call, ApiKeyCheck) for call in calls):
        statuses.add("401")
    if require_json in calls and route.methods & {"POST", "PUT", "PATCH"}:
        statuses.add("415")
    if route.body_field is not None or "requestBody" in (route.openapi_extra or {}):
        statuses |= {"400", "413", "422"}
    if any(part.path_params or part.query_params or part.header_params for part in parts):
        statuses.add("422")
    if route.dependant.path_params:
        statuses.add("404")
    if gateway_of in calls:
        statuses.add("503")
    return statuses


@pytest.mark.parametrize("keyed", [True, False], ids=["with api.key", "without api.key"])
def test_every_route_documents_every_status_it_can_answer(keyed: bool) -> None:
    app = app_with(key=KEY) if keyed else app_with()
    paths = app.openapi()["paths"]
    routes = api_routes(app)
    assert len(routes) >= 12
    missing = {}
    for route in routes:
        for method in route.methods:
            documented = set(paths[route.path_format][method.lower()]["responses"])
            if not possible_statuses(route) <= documented:
                missing[f"{method} {route.path_format}"] = possible_statuses(route) - documented
    assert not missing


def test_the_key_guards_every_route_but_the_probes_and_the_webhook() -> None:
    keyed = {
        f"{method} {route.path_format}": "401" in possible_statuses(route)
        for route in api_routes(app_with(key=KEY))
        for method in route.methods
    }
    assert keyed["GET /metrics"] and keyed["POST /orders"] and keyed["GET /orders/{order_id}"]
    assert not keyed["GET /healthz"] and not keyed["GET /readyz"]
    assert not keyed["POST /webhooks/payments"]  # signed instead
    assert not any("401" in possible_statuses(route) for route in api_routes(app_with()))


def test_routes_that_read_or_write_the_database_document_503() -> None:
    paths = app_with(key=KEY).openapi()["paths"]
    for path in ("/orders", "/orders/{order_id}", "/customers", "/webhooks/payments"):
        for operation in paths[path].values():
            assert "503" in operation["responses"], path


def test_healthz_documents_the_status_and_the_version() -> None:
    document = app_with(key=KEY).openapi()
    answer = document["paths"]["/healthz"]["get"]["responses"]["200"]
    reference = answer["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][reference.rsplit("/", 1)[1]]

    assert set(schema["required"]) == {"status", "version"}
    assert schema["properties"]["status"]["const"] == "ok"
    assert schema["properties"]["version"]["type"] == "string"
