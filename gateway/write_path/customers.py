"""Customers and their addresses in PostgreSQL."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from gateway.errors import AlreadyExists, NotFound, ValidationError
from gateway.postgres.database import Connection, fetch_required
from gateway.postgres.outbox import Event
from gateway.postgres.queries import query
from gateway.write_path.models import Address, AddressRequest, Customer, CustomerRequest

CUSTOMER_AGGREGATE = "customer"
CUSTOMER_CREATED = "customer.created"


async def insert_customer(
    connection: Connection, request: CustomerRequest, customer_id: UUID | None = None
) -> Customer:
    """Insert a customer and its addresses (inside the caller's transaction), with the id
    ``customer_id`` when given."""
    try:
        row = await fetch_required(
            connection,
            query("insert_customer"),
            request.email,
            request.first_name,
            request.last_name,
            request.phone,
            request.date_of_birth,
            customer_id,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists("customer", "email", request.email) from None
    addresses = [
        await _insert_address(connection, row["id"], address, f"addresses[{index}]")
        for index, address in enumerate(request.addresses)
    ]
    return Customer(**dict(row), addresses=addresses)


async def insert_address(
    connection: Connection, customer_id: UUID, request: AddressRequest
) -> Address:
    """Add an address to an existing customer (in the caller's transaction)."""
    exists = await connection.fetchval(query("lock_customer_key"), customer_id)
    if not exists:
        raise NotFound("customer", customer_id, field="customer_id")
    return await _insert_address(connection, customer_id, request, "")


def customer_event(customer: Customer) -> Event:
    """The ``customer.created`` outbox event."""
    return Event(
        aggregate_type=CUSTOMER_AGGREGATE,
        aggregate_id=str(customer.id),
        event_type=CUSTOMER_CREATED,
        version=1,
        payload=customer.model_dump(mode="json"),
    )


async def _insert_address(
    connection: Connection, customer_id: UUID, request: AddressRequest, field: str
) -> Address:
    if request.is_default:
        # The new default replaces the customer's previous default address of its type.
        await connection.execute(query("clear_default_address"), customer_id, request.address_type)
    try:
        # A savepoint, so that a rejected address leaves the caller's transaction usable.
        async with connection.transaction():
            row = await fetch_required(
                connection,
                query("insert_address"),
                customer_id,
                request.address_type,
                request.street_address,
                request.city,
                request.state,
                request.postal_code,
                request.country,
                request.is_default,
            )
    except asyncpg.UniqueViolationError:
        prefix = f"{field}." if field else ""
        raise ValidationError.single(
            f"{prefix}is_default",
            f"the customer already has a default {request.address_type} address",
        ) from None
    return Address(**dict(row))
