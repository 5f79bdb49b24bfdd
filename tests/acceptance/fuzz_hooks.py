"""Schemathesis hooks for fuzzing ``fanout serve``: references that exist.

A request can be valid by the schema and still name a customer, address, product or category
that does not exist, which the API rightly refuses. So that generated orders are placed (and
the stateful phase can follow them through their transitions), every well-formed id in a
generated body is replaced by one of the records the test seeded, read from the JSON file
named by ``FANOUT_TEST_FUZZ_REFERENCES``. Only ids that are already valid UUIDs are replaced,
so a request the schema forbids stays forbidden.

Payment notifications are signed as a provider signs them (over the exact bytes sent) when the
generated request carries a signature header at all, so that the fuzzer reaches the payment
rules behind the signature; those without one test its refusal.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

import schemathesis

from gateway.payments.signature import SIGNATURE_HEADER, signature_header
from gateway.write_path.pages import CURSOR_PATTERN, encode_cursor

_REFERENCES: dict[str, Any] = json.loads(
    open(os.environ["FANOUT_TEST_FUZZ_REFERENCES"], encoding="utf-8").read()  # noqa: SIM115
)


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _order(body: dict[str, Any]) -> dict[str, Any]:
    customers = _REFERENCES["customers"]
    customer = customers[zlib.crc32(repr(body.get("customer_id")).encode()) % len(customers)]
    for field in ("customer_id", "billing_address_id", "shipping_address_id"):
        if _is_uuid(body.get(field)):
            body[field] = customer[field]
    items = body.get("items")
    if isinstance(items, list):
        products = _REFERENCES["products"]
        for index, item in enumerate(items):
            if isinstance(item, dict) and _is_uuid(item.get("product_id")):
                item["product_id"] = products[index % len(products)]
    return body


def _customer_orders(case: Any) -> None:
    """A seeded customer for a well-formed id, and a cursor the API made for a well-formed
    one (a cursor is opaque: any other is rightly refused)."""
    path = case.path_parameters or {}
    if _is_uuid(path.get("customer_id")):
        customers = _REFERENCES["customers"]
        path["customer_id"] = customers[zlib.crc32(path["customer_id"].encode()) % len(customers)][
            "customer_id"
        ]
    query = case.query or {}
    if isinstance(query.get("cursor"), str) and re.match(CURSOR_PATTERN, query["cursor"]):
        query["cursor"] = encode_cursor(datetime.now(UTC), uuid.uuid4())


def _sign_notification(case: Any, kwargs: dict[str, Any]) -> None:
    """Point a well-formed order id at a seeded order, and sign the body to be sent."""
    body = case.body
    if isinstance(body, dict) and _is_uuid(body.get("order_id")):
        orders = _REFERENCES["orders"]
        body["order_id"] = orders[zlib.crc32(body["order_id"].encode()) % len(orders)]
    headers = case.headers or {}
    if SIGNATURE_HEADER not in headers or not _is_json(body):
        return
    raw = json.dumps(body).encode()
    kwargs["data"] = raw
    headers[SIGNATURE_HEADER] = signature_header(
        raw, [_REFERENCES["webhook_secret"]], int(time.time())
    )
    case.headers = headers


def _is_json(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Any, kwargs: dict[str, Any]) -> None:
    """Point the ids of every generated body (in every phase) at seeded records."""
    operation = (case.operation.method.upper(), case.operation.path)
    if operation == ("GET", "/customers/{customer_id}/orders"):
        _customer_orders(case)
    if operation == ("POST", "/webhooks/payments"):
        _sign_notification(case, kwargs)
    body = case.body
    if not isinstance(body, dict):
        return
    if operation == ("POST", "/orders"):
        _order(body)
    elif operation == ("POST", "/products") and _is_uuid(body.get("category_id")):
        body["category_id"] = _REFERENCES["category_id"]
