"""Text a request brings must be storable: no NUL, and no lone surrogate (a string that is not
Unicode text, which no UTF-8 database can hold). Each is refused naming where it is."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import BaseModel

from gateway.errors import ValidationError
from gateway.write_path.models import (
    AddressRequest,
    CategoryRequest,
    CustomerRequest,
    PlaceOrderRequest,
    ProductRequest,
)
from gateway.write_path.validation import parse

PRODUCT = {"sku": "S-1", "name": "Pen", "base_price": "1.00"}
ORDER = {
    "customer_id": str(uuid.uuid4()),
    "billing_address_id": str(uuid.uuid4()),
    "shipping_address_id": str(uuid.uuid4()),
    "items": [{"product_id": str(uuid.uuid4()), "quantity": 1}],
}
ADDRESS = {
    "address_type": "billing",
    "street_address": "1 Main St",
    "city": "Springfield",
    "postal_code": "12345",
}
CUSTOMER = {"email": "a@example.com", "first_name": "Ada", "last_name": "Lovelace"}
LONE = ["\ud800", "\udfff", "a\udc00b"]
TEXT_RULE = "must be Unicode text: a lone surrogate (half of a UTF-16 pair) cannot be stored"


def with_text(value: Any, text: str) -> Any:
    """``value`` with ``{}`` in each of its strings replaced by ``text``."""
    if isinstance(value, str):
        return value.replace("{}", text)
    if isinstance(value, dict):
        return {key: with_text(item, text) for key, item in value.items()}
    if isinstance(value, list):
        return [with_text(item, text) for item in value]
    return value


def refused(model: type[BaseModel], data: dict[str, Any]) -> list[tuple[str, str]]:
    """The (field, message) pairs ``data`` is refused with."""
    with pytest.raises(ValidationError) as raised:
        parse(model, data)
    errors = [(error.field, error.message) for error in raised.value.errors]
    for field, message in errors:  # an answer naming them must itself be sendable
        (field + message).encode("utf-8")
    return errors


@pytest.mark.parametrize("lone", LONE)
@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (ProductRequest, PRODUCT | {"description": "d{}"}, "description"),
        (ProductRequest, PRODUCT | {"name": "p{}"}, "name"),
        (CategoryRequest, {"name": "c", "slug": "c", "description": "{}"}, "description"),
        (PlaceOrderRequest, ORDER | {"notes": "n{}"}, "notes"),
        (AddressRequest, ADDRESS | {"street_address": "1 {}"}, "street_address"),
        (AddressRequest, ADDRESS | {"city": "{}x"}, "city"),
        (CustomerRequest, CUSTOMER | {"first_name": "A{}"}, "first_name"),
        (
            CustomerRequest,
            CUSTOMER | {"addresses": [ADDRESS | {"postal_code": "1{}"}]},
            "addresses[0].postal_code",
        ),
    ],
)
def test_a_lone_surrogate_in_a_text_field_is_refused_naming_the_field(
    model: type[BaseModel], data: dict[str, Any], field: str, lone: str
) -> None:
    assert [field for field, _ in refused(model, with_text(data, lone))] == [field]


@pytest.mark.parametrize(
    ("model", "base", "member", "value", "field"),
    [
        (ProductRequest, PRODUCT, "attributes", {"x": "\ud800"}, "attributes.x"),
        (ProductRequest, PRODUCT, "attributes", {"x": ["ok", "\udfff"]}, "attributes.x[1]"),
        (ProductRequest, PRODUCT, "attributes", {"x": {"y": ["a\udc00"]}}, "attributes.x.y[0]"),
        (PlaceOrderRequest, ORDER, "metadata", {"a": "\ud800"}, "metadata.a"),
        (PlaceOrderRequest, ORDER, "metadata", {"a": [{"b": "\ud800"}]}, "metadata.a[0].b"),
    ],
)
def test_a_lone_surrogate_in_a_json_value_is_refused_naming_its_path(
    model: type[BaseModel], base: dict[str, Any], member: str, value: Any, field: str
) -> None:
    errors = refused(model, base | {member: value})

    assert [field for field, _ in errors] == [field]
    assert TEXT_RULE in errors[0][1]


@pytest.mark.parametrize(
    ("model", "base", "member", "value", "field"),
    [
        (ProductRequest, PRODUCT, "attributes", {"\ud800": 1}, "attributes"),
        (ProductRequest, PRODUCT, "attributes", {"x": {"\udfff": 1}}, "attributes.x"),
        (PlaceOrderRequest, ORDER, "metadata", {"a": [{"k\udc00": None}]}, "metadata.a[0]"),
    ],
)
def test_a_lone_surrogate_in_a_json_key_is_refused_naming_the_object_holding_it(
    model: type[BaseModel], base: dict[str, Any], member: str, value: Any, field: str
) -> None:
    errors = refused(model, base | {member: value})

    assert [field for field, _ in errors] == [field]
    assert "a key" in errors[0][1] and TEXT_RULE in errors[0][1]


def test_nul_in_a_json_value_is_refused_naming_its_path() -> None:
    errors = refused(ProductRequest, PRODUCT | {"attributes": {"x": ["a\x00"]}})

    assert errors == [("attributes.x[0]", "must not contain the NUL character")]


def test_free_text_says_why_it_is_refused() -> None:
    assert refused(ProductRequest, PRODUCT | {"description": "\ud800"}) == [
        ("description", f"Value error, {TEXT_RULE}")
    ]


def test_text_outside_the_basic_plane_is_accepted_as_it_is() -> None:
    text = "caf\u00e9 \U0001f600 \u4e2d"
    product = parse(
        ProductRequest, PRODUCT | {"description": text, "attributes": {text: [text, {text: 1}]}}
    )

    assert product.description == text
    assert product.attributes == {text: [text, {text: 1}]}
