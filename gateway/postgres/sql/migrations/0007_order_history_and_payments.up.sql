-- Every order's history, kept apart from the outbox's delivery window; payments received for
-- orders; and what an order's payment stands at.

-- The order's events for good (or for events.retention_days): one stream per order, written in
-- the same statement as the outbox row, so the two never disagree.
CREATE TABLE order_events (
    stream_id   uuid NOT NULL,
    version     integer NOT NULL,
    event_id    uuid NOT NULL UNIQUE,
    event_type  varchar(100) NOT NULL,
    payload     jsonb NOT NULL,
    headers     jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (stream_id, version),
    CONSTRAINT order_events_version_positive CHECK (version >= 1)
);

-- Retention deletes by age, oldest first.
CREATE INDEX order_events_occurred_at ON order_events (occurred_at);

-- awaiting: placed while payment is on, not paid yet; paid; failed (the provider said so);
-- mismatched (a payment whose amount or currency is not the order's); expired (cancelled by
-- the payment timeout); refund_required (money arrived for an order that cannot take it).
-- NULL: placed while payment was off.
ALTER TABLE orders
    ADD COLUMN payment_status varchar(20),
    ADD COLUMN payment_due_at timestamptz,
    ADD CONSTRAINT orders_payment_status_known CHECK (
        payment_status IN ('awaiting', 'paid', 'failed', 'mismatched', 'expired', 'refund_required')
    );

-- The timeout sweeper's work: pending orders by due time.
CREATE INDEX orders_payment_due ON orders (payment_due_at)
    WHERE status = 'pending' AND payment_due_at IS NOT NULL;

-- One row per payment notification, keyed by the provider's payment id: a redelivery finds
-- its row and writes nothing.
CREATE TABLE payments (
    payment_id  varchar(255) PRIMARY KEY,
    order_id    uuid NOT NULL REFERENCES orders (id),
    status      varchar(16) NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    currency    char(3) NOT NULL,
    occurred_at timestamptz NOT NULL,
    outcome     varchar(32) NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payments_status_known CHECK (status IN ('succeeded', 'failed')),
    CONSTRAINT payments_outcome_known CHECK (
        outcome IN ('confirmed', 'attached', 'cancelled', 'mismatch', 'refund_required', 'ignored')
    )
);

CREATE INDEX payments_order_id ON payments (order_id);
CREATE INDEX payments_needing_attention ON payments (received_at)
    WHERE outcome IN ('mismatch', 'refund_required');
