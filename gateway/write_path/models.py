"""Requests accepted and records returned by the gateway's public API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PrivateAttr,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema
from pydantic_core import ValidationError as PydanticCoreValidationError
from typing_extensions import TypeAliasType

from gateway.write_path.lifecycle import PaymentStatus
from gateway.write_path.order_status import OrderStatus

# What the text fields of a request state and enforce: PostgreSQL cannot store NUL (nor a lone
# surrogate, which is no Unicode text, so no schema pattern can state it), and a required text
# must hold more than white space. Lengths count the text as sent; it is then stripped of white
# space. White space is spelled out (Unicode's White_Space), in the schema's pattern and in the
# stripping alike, so that both mean the same to every engine.
WHITE_SPACE = (
    "\t\n\u000b\f\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_SPACE = "\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL = "^[^\u0000]*$"
NOT_BLANK = f"^[^\u0000]*[^\u0000{_SPACE}][^\u0000]*$"


def json_integer(value: object) -> object:
    """JSON's integers only: not a string of digits, nor true/false (as Python's lax int)."""
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a JSON integer")
    return value


def _money_text(value: object) -> object:
    # A JSON amount is a string ("12.50"): a float cannot hold cents exactly.
    if isinstance(value, bool | int | float):
        raise ValueError('must be a decimal string such as "12.50"')
    return value


def _json_text_errors(
    value: Any, location: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    # jsonb holds text only: every key and string is checked, each error at its own path (a
    # key's at the object holding it, so that no error names the text it refuses).
    if isinstance(value, str):
        if problem := _text_problem(value):
            yield location, problem
    elif isinstance(value, dict):
        for key, item in value.items():
            if problem := _text_problem(key):
                yield location, f"a key {problem}"
            else:
                yield from _json_text_errors(item, (*location, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_text_errors(item, (*location, index))


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    errors = [
        InitErrorDetails(
            type=PydanticCustomError("json_text", "{problem}", {"problem": problem}),
            loc=location,
            input="",
        )
        for location, problem in _json_text_errors(value)
    ]
    if errors:
        raise PydanticCoreValidationError.from_exception_data("JsonObject", errors)
    return value


def _not_a_number(value: object) -> object:
    # A date is a JSON string ("2000-01-31"); Python's lax date would read 0 as 1970-01-01.
    if isinstance(value, bool | int | float):
        raise ValueError('must be a date string such as "2000-01-31"')
    return value


JsonInteger = Annotated[int, BeforeValidator(json_integer)]
JsonDate = Annotated[date, BeforeValidator(_not_a_number)]


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store ``value`` as text (``None``: it can)."""
    if "\x00" in value:
        return "must not contain the NUL character"
    if _LONE_SURROGATE.search(value):
        return "must be Unicode text: a lone surrogate (half of a UTF-16 pair) cannot be stored"
    return None


def _storable(value: str) -> str:
    if problem := _text_problem(value):
        raise ValueError(problem)
    return value


def _stripped(value: str) -> str:
    stripped = _storable(value).strip(WHITE_SPACE)
    if not stripped:
        raise ValueError("must not be blank")
    return stripped


@dataclass(frozen=True)
class _Stated:
    """Adds ``keywords`` to the JSON schema of a value whose validators enforce them."""

    keywords: dict[str, Any]

    def __hash__(self) -> int:
        return hash(repr(self.keywords))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(self.keywords)
        return json_schema


Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(_stripped),
    _Stated({"pattern": NOT_BLANK}),
]
ShortText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255),
    AfterValidator(_stripped),
    _Stated({"pattern": NOT_BLANK}),
]
PostalCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=20),
    AfterValidator(_stripped),
    _Stated({"pattern": NOT_BLANK}),
]
LongText = Annotated[
    str, StringConstraints(max_length=2000), AfterValidator(_storable), _Stated({"pattern": NO_NUL})
]
FreeText = Annotated[str, AfterValidator(_storable), _Stated({"pattern": NO_NUL})]


# Free-form JSON goes to a jsonb column, which holds neither NUL, lone surrogates nor numbers
# past a double's range; the keys and strings are checked by JsonObject's validator.
if TYPE_CHECKING:
    JsonObject = dict[str, Any]
else:
    JsonValue = TypeAliasType(
        "JsonValue",
        Annotated[str, _Stated({"pattern": NO_NUL})]
        | int
        | Annotated[float, Field(allow_inf_nan=False)]
        | bool
        | list["JsonValue"]
        | Annotated[dict[str, "JsonValue"], _Stated({"propertyNames": {"pattern": NO_NUL}})]
        | None,
    )
    JsonObject = Annotated[
        dict[str, JsonValue],
        AfterValidator(_storable_json),
        _Stated({"propertyNames": {"pattern": NO_NUL}}),
    ]
Email = Annotated[
    str,
    StringConstraints(max_length=255, pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$"),
]
# At most 20 characters (the column's width), kept as given.
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 ().-]{6,18}$")]
MONEY_PATTERN = r"^[0-9]{1,8}(\.[0-9]{1,2})?$"
Money = Annotated[
    Decimal,
    BeforeValidator(_money_text),
    Field(ge=0, max_digits=10, decimal_places=2),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["12.50"]}),
]
# Hard limits; the configured limits (orders.max_items, orders.max_quantity) may be lower.
MAX_ITEMS_PER_REQUEST = 1000
MAX_METADATA_BYTES = 16_384


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoredRecord(BaseModel):
    """What the gateway stored and returns (an order, a customer, an address, ...)."""

    model_config = ConfigDict(frozen=True)
    _consistency_token: str | None = PrivateAttr(default=None)

    @property
    def consistency_token(self) -> str | None:
        """Where the write that returned this stands in the primary's WAL, when replicas are
        configured: give it to a read to see this write (read-your-writes). ``None`` on what a
        read returned, and without replicas."""
        return self._consistency_token


class OrderItemRequest(_Request):
    """One line of an order: a product and how many units of it."""

    product_id: UUID
    quantity: JsonInteger = Field(gt=0)


class PlaceOrderRequest(_Request):
    """What ``place_order`` needs: the customer, addresses and items."""

    customer_id: UUID
    billing_address_id: UUID
    shipping_address_id: UUID
    items: list[OrderItemRequest] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)
    metadata: JsonObject = Field(default_factory=dict)
    customer_segment: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,50}$")] | None = None
    notes: LongText | None = None

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


class OrderItem(StoredRecord):
    """A stored order line, with the product's name and SKU as they were when ordered."""

    id: UUID
    product_id: UUID
    product_name: str
    product_sku: str
    quantity: int
    unit_price: Decimal
    total_price: Decimal


class Order(StoredRecord):
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
    payment_status: PaymentStatus | None = None
    """Where the order's payment stands; ``None`` when it was placed with payment off."""
    payment_due_at: datetime | None = None
    """When the order is cancelled unless paid (``orders.payment_timeout_seconds``)."""
    items: list[OrderItem]


class OrderPage(BaseModel):
    """A page of a customer's orders, newest first."""

    orders: list[Order]
    next_cursor: str | None
    """Give it as ``before`` for the next page; ``None`` on the last page."""


class AddressRequest(_Request):
    """A billing or shipping address of a customer."""

    address_type: Literal["billing", "shipping"]
    street_address: ShortText
    city: Name
    state: Name | None = None
    postal_code: PostalCode
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = "US"
    is_default: StrictBool = False


class Address(StoredRecord):
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
    date_of_birth: JsonDate | None = None
    addresses: list[AddressRequest] = Field(default_factory=list, max_length=20)


class Customer(StoredRecord):
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
    description: FreeText | None = None
    parent_id: UUID | None = None


class Category(StoredRecord):
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
    description: FreeText | None = None
    category_id: UUID | None = None
    base_price: Money
    inventory_quantity: JsonInteger = Field(default=0, ge=0, le=2_147_483_647)
    attributes: JsonObject = Field(default_factory=dict)


class Product(StoredRecord):
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
