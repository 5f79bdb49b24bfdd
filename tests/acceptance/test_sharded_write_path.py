"""The write path's acceptance tests of one database, run again in sharded mode (the catalog
and two shards on three servers): the same calls must give the same results.

Left out are the tests that read or change one database's tables through ``gateway.pool``
(the catalog's, in sharded mode): idempotency keys' expiry, payment rows, default addresses, a
trigger on the outbox, LISTEN on the outbox's channel. ``test_sharding`` covers what the
saga changes about them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway import Gateway
from support.sharding import connect_sharded, sharded_databases
from support.shop import Shop

# Collected again here, over this module's sharded gateway.
from tests.acceptance.test_idempotency import (  # noqa: F401
    test_a_failed_request_does_not_use_up_its_key,
    test_fifty_concurrent_requests_with_one_key_create_one_order,
    test_malformed_keys_are_rejected,
    test_the_same_key_and_request_return_the_first_order,
    test_the_same_key_with_another_request_is_a_conflict,
)
from tests.acceptance.test_payments import (  # noqa: F401
    test_a_bad_notification_names_the_field_and_writes_nothing,
    test_a_failed_payment_cancels_the_order_and_returns_its_units,
    test_a_payment_of_another_amount_is_a_mismatch_and_does_not_confirm,
    test_a_placed_order_awaits_its_payment_until_the_timeout,
    test_concurrent_first_deliveries_record_one_payment,
)
from tests.acceptance.test_place_order import (  # noqa: F401
    test_an_inactive_product_is_not_for_sale,
    test_configured_limits_are_enforced,
    test_insufficient_inventory_names_the_product_and_writes_nothing,
    test_invalid_requests_name_the_field_and_write_nothing,
    test_many_orders_never_oversell,
    test_places_an_order_with_its_items_totals_and_event,
    test_shipping_is_free_from_the_threshold,
    test_two_orders_racing_for_the_last_unit,
    test_unknown_customer_and_foreign_address_are_rejected,
    test_unknown_product_names_the_item_and_writes_nothing,
)
from tests.acceptance.test_publish_and_customers import (  # noqa: F401
    test_a_duplicate_email_is_refused_and_writes_nothing,
    test_create_customer_appends_customer_created,
    test_invalid_customers_name_the_field,
    test_publish_outside_a_transaction_is_refused,
    test_published_events_commit_with_the_callers_rows,
    test_published_events_roll_back_with_the_callers_rows,
)
from tests.acceptance.test_transitions import (  # noqa: F401
    test_a_stale_expected_version_is_a_conflict,
    test_cancelling_returns_the_units_to_inventory,
    test_concurrent_transitions_from_one_version_let_one_win,
    test_illegal_transitions_are_refused_and_write_nothing,
    test_the_happy_path_bumps_the_version_and_appends_events,
    test_unknown_orders_and_statuses_are_rejected,
)


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[Gateway]:
    """A sharded gateway over fresh catalog and shard databases."""
    async with sharded_databases() as found, await connect_sharded(found) as connected:
        yield connected


@pytest.fixture
def shop(gateway: Gateway) -> Shop:
    """Makes customers, addresses and products in sharded mode."""
    return Shop(gateway)
