"""Categories and products in PostgreSQL."""

from __future__ import annotations

import asyncpg

from gateway.errors import AlreadyExists, NotFound
from gateway.postgres.database import Connection, fetch_required
from gateway.postgres.queries import query
from gateway.write_path.models import Category, CategoryRequest, Product, ProductRequest


async def insert_category(connection: Connection, request: CategoryRequest) -> Category:
    """Insert a category."""
    try:
        row = await fetch_required(
            connection,
            query("insert_category"),
            request.name,
            request.slug,
            request.description,
            request.parent_id,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists("category", "slug", request.slug) from None
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("category", request.parent_id, field="parent_id") from None
    return Category(**dict(row))


async def insert_product(connection: Connection, request: ProductRequest) -> Product:
    """Insert a product."""
    try:
        row = await fetch_required(
            connection,
            query("insert_product"),
            request.sku,
            request.name,
            request.description,
            request.category_id,
            request.base_price,
            request.inventory_quantity,
            request.attributes,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists("product", "sku", request.sku) from None
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("category", request.category_id, field="category_id") from None
    return Product(**dict(row))
