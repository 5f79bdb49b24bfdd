-- The e-commerce model: customers, their addresses, the catalog, orders and their items.
-- Fixes over the original design's SQL: address_type_enum is defined before use, and
-- "one default address per type per customer" is a partial unique index, because
-- PostgreSQL does not accept UNIQUE ... WHERE as a table constraint.

CREATE TYPE address_type_enum AS ENUM ('billing', 'shipping');

CREATE TYPE order_status AS ENUM (
    'pending', 'confirmed', 'processing', 'shipped', 'delivered', 'cancelled', 'refunded'
);

CREATE TABLE customers (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         varchar(255) NOT NULL UNIQUE,
    first_name    varchar(100) NOT NULL,
    last_name     varchar(100) NOT NULL,
    phone         varchar(20),
    date_of_birth date,
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customers_email_format
        CHECK (email ~* '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$'),
    CONSTRAINT customers_phone_format
        CHECK (phone IS NULL OR phone ~ '^\+?[0-9][0-9 ().-]{6,19}$')
);

CREATE TABLE addresses (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id    uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    address_type   address_type_enum NOT NULL,
    street_address varchar(255) NOT NULL,
    city           varchar(100) NOT NULL,
    state          varchar(100),
    postal_code    varchar(20) NOT NULL,
    country        char(2) NOT NULL DEFAULT 'US',
    is_default     boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT addresses_country_format CHECK (country ~ '^[A-Z]{2}$')
);

CREATE INDEX addresses_customer_id ON addresses (customer_id);
CREATE UNIQUE INDEX addresses_one_default_per_type
    ON addresses (customer_id, address_type) WHERE is_default;

CREATE TABLE categories (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        varchar(100) NOT NULL,
    slug        varchar(100) NOT NULL UNIQUE,
    description text,
    parent_id   uuid REFERENCES categories (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT categories_not_own_parent CHECK (parent_id IS NULL OR parent_id <> id)
);

CREATE INDEX categories_parent_id ON categories (parent_id);

CREATE TABLE products (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sku                varchar(64) NOT NULL UNIQUE,
    name               varchar(255) NOT NULL,
    description        text,
    category_id        uuid REFERENCES categories (id) ON DELETE SET NULL,
    base_price         numeric(10, 2) NOT NULL,
    inventory_quantity integer NOT NULL DEFAULT 0,
    attributes         jsonb NOT NULL DEFAULT '{}',
    is_active          boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT products_base_price_non_negative CHECK (base_price >= 0),
    CONSTRAINT products_inventory_non_negative CHECK (inventory_quantity >= 0)
);

CREATE INDEX products_category_id ON products (category_id);

CREATE SEQUENCE order_number_seq;

CREATE TABLE orders (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_number        varchar(32) NOT NULL UNIQUE,
    customer_id         uuid NOT NULL REFERENCES customers (id),
    status              order_status NOT NULL DEFAULT 'pending',
    subtotal            numeric(12, 2) NOT NULL,
    tax_amount          numeric(12, 2) NOT NULL DEFAULT 0,
    shipping_amount     numeric(12, 2) NOT NULL DEFAULT 0,
    total_amount        numeric(12, 2) NOT NULL,
    currency            char(3) NOT NULL DEFAULT 'USD',
    billing_address_id  uuid REFERENCES addresses (id),
    shipping_address_id uuid REFERENCES addresses (id),
    customer_segment    varchar(50),
    metadata            jsonb NOT NULL DEFAULT '{}',
    notes               text,
    version             integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_subtotal_non_negative CHECK (subtotal >= 0),
    CONSTRAINT orders_tax_non_negative CHECK (tax_amount >= 0),
    CONSTRAINT orders_shipping_non_negative CHECK (shipping_amount >= 0),
    CONSTRAINT orders_total_is_sum CHECK (total_amount = subtotal + tax_amount + shipping_amount),
    CONSTRAINT orders_version_positive CHECK (version >= 1)
);

CREATE INDEX orders_customer_id_created_at ON orders (customer_id, created_at DESC);
CREATE INDEX orders_status ON orders (status);
CREATE INDEX orders_created_at ON orders (created_at);

CREATE TABLE order_items (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id     uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id   uuid NOT NULL REFERENCES products (id),
    product_name varchar(255) NOT NULL,
    product_sku  varchar(64) NOT NULL,
    quantity     integer NOT NULL,
    unit_price   numeric(10, 2) NOT NULL,
    total_price  numeric(12, 2) NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT order_items_quantity_positive CHECK (quantity > 0),
    CONSTRAINT order_items_unit_price_non_negative CHECK (unit_price >= 0),
    CONSTRAINT order_items_total_is_product CHECK (total_price = quantity * unit_price)
);

CREATE INDEX order_items_order_id ON order_items (order_id);
CREATE INDEX order_items_product_id ON order_items (product_id);
