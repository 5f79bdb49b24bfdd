"""Requests accepted and records returned by the gateway's public API."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from gateway.order_status import OrderStatus

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=255,
        pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$",
    ),
]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 ().-]{6,19}$")
]
Money = Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2)]
# Hard limits; the configured limits (orders.max_items, orders.max_quantity) may be lower.
MAX_ITEMS_PER_REQUEST = 1000
MAX_METADATA_BYTES = 16_384


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class OrderItemRequest(_Request):
    """One line of an order: a product and how many units of it."""

    product_id: UUID
    quantity: int = Field(gt=0)


class PlaceOrderRequest(_Request):
    """What ``place_order`` needs: the customer, addresses and items."""

    customer_id: UUID
    billing_address_id: UUID
    shipping_address_id: UUID
    items: list[OrderItemRequest] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)
    metadata: dict[str, Any] = Field(default_factory=dict)
    customer_segment: (
        Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9_-]{1,50}$")]
        | None
    ) = None
    notes: Annotated[str, StringConstraints(max_length=2000)] | None = None

    @field_validator("items")
    @classmethod
    def _distinct_products(cls, items: list[OrderItemRequest]) -> list[OrderItemRequest]:
        seen: set[UUID] = set()
        for item in items:
            if item.product_id in seen:
                raise ValueError(
                    f"product {item.product_id} appears more than once; give one line per product"
                )
            seen.add(item.product_id)
        return items

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        from pydantic_core import to_json

        if len(to_json(metadata)) > MAX_METADATA_BYTES:
            raise ValueError(f"must serialise to at most {MAX_METADATA_BYTES} bytes of JSON")
        return metadata


class OrderItem(_Record):
    """A stored order line, with the product's name and SKU as they were when ordered."""

    id: UUID
    product_id: UUID
    product_name: str
    product_sku: str
    quantity: int
    unit_price: Decimal
    total_price: Decimal


class Order(_Record):
    """A stored order with its items."""

    id: UUID
    order_number: str
    customer_id: UUID
    status: OrderStatus
    subtotal: Decimal
    tax_amount: Decimal
    shipping_amount: Decimal
    total_amount: Decimal
    currency: str
    billing_address_id: UUID | None
    shipping_address_id: UUID | None
    customer_segment: str | None
    metadata: dict[str, Any]
    notes: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    items: list[OrderItem]


class AddressRequest(_Request):
    """A billing or shipping address of a customer."""

    address_type: Literal["billing", "shipping"]
    street_address: ShortText
    city: Name
    state: Name | None = None
    postal_code: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)
    ]
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = "US"
    is_default: bool = False


class Address(_Record):
    """A stored address."""

    id: UUID
    customer_id: UUID
    address_type: Literal["billing", "shipping"]
    street_address: str
    city: str
    state: str | None
    postal_code: str
    country: str
    is_default: bool
    created_at: datetime


class CustomerRequest(_Request):
    """A new customer, optionally with addresses."""

    email: Email
    first_name: Name
    last_name: Name
    phone: Phone | None = None
    date_of_birth: date | None = None
    addresses: list[AddressRequest] = Field(default_factory=list, max_length=20)


class Customer(_Record):
    """A stored customer with its addresses."""

    id: UUID
    email: str
    first_name: str
    last_name: str
    phone: str | None
    date_of_birth: date | None
    is_active: bool
    created_at: datetime
    updated_at: datetime
    addresses: list[Address]


class CategoryRequest(_Request):
    """A product category, optionally under a parent."""

    name: Name
    slug: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=100)]
    description: str | None = None
    parent_id: UUID | None = None


class Category(_Record):
    """A stored category."""

    id: UUID
    name: str
    slug: str
    description: str | None
    parent_id: UUID | None
    created_at: datetime


class ProductRequest(_Request):
    """A new product with its price and initial stock."""

    sku: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    name: ShortText
    description: str | None = None
    category_id: UUID | None = None
    base_price: Money
    inventory_quantity: int = Field(default=0, ge=0)
    attributes: dict[str, Any] = Field(default_factory=dict)


class Product(_Record):
    """A stored product."""

    id: UUID
    sku: str
    name: str
    description: str | None
    category_id: UUID | None
    base_price: Decimal
    inventory_quantity: int
    attributes: dict[str, Any]
    is_active: bool
    created_at: datetime
    updated_at: datetime


class Event(_Request):
    """An event to append to the outbox with :meth:`gateway.Gateway.publish`.

    ``version`` is the aggregate's version after the change; sinks use it to ignore events
    older than what they already hold.
    """

    aggregate_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,99}$")]
    aggregate_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    event_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,99}$")]
    version: int = Field(default=1, ge=1)
    payload: dict[str, Any]
    headers: dict[str, str] = Field(default_factory=dict)
    event_id: UUID = Field(default_factory=uuid4)
