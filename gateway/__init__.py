"""Fan-out gateway: orders in PostgreSQL, their events relayed to every read-side store."""

from importlib.metadata import version as _version

from gateway.configuration.settings import Settings, load_settings
from gateway.errors import (
    AlreadyExists,
    ConfigError,
    Conflict,
    FieldError,
    GatewayError,
    IdempotencyConflict,
    IllegalTransition,
    InsufficientInventory,
    MigrationChecksumMismatch,
    MigrationError,
    NotFound,
    ValidationError,
    VersionConflict,
)
from gateway.facade.gateway import Gateway
from gateway.postgres.database import DatabaseUnavailable
from gateway.postgres.migrations import Migration, MigrationRunner, MigrationState, MigrationStatus
from gateway.postgres.outbox import Event
from gateway.write_path.models import (
    Address,
    AddressRequest,
    Category,
    CategoryRequest,
    Customer,
    CustomerRequest,
    Order,
    OrderItem,
    OrderItemRequest,
    OrderPage,
    PlaceOrderRequest,
    Product,
    ProductRequest,
)
from gateway.write_path.order_status import OrderStatus
from gateway.write_path.placement import PlacedOrder

__version__ = _version("fanout-gateway")

__all__ = [
    "Address",
    "AddressRequest",
    "AlreadyExists",
    "Category",
    "CategoryRequest",
    "ConfigError",
    "Conflict",
    "Customer",
    "CustomerRequest",
    "DatabaseUnavailable",
    "Event",
    "FieldError",
    "Gateway",
    "GatewayError",
    "IdempotencyConflict",
    "IllegalTransition",
    "InsufficientInventory",
    "Migration",
    "MigrationChecksumMismatch",
    "MigrationError",
    "MigrationRunner",
    "MigrationState",
    "MigrationStatus",
    "NotFound",
    "Order",
    "OrderItem",
    "OrderItemRequest",
    "OrderPage",
    "OrderStatus",
    "PlaceOrderRequest",
    "PlacedOrder",
    "Product",
    "ProductRequest",
    "Settings",
    "ValidationError",
    "VersionConflict",
    "load_settings",
]
