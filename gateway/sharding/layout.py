"""The layout of sharded mode: customers and their orders spread over several PostgreSQL
primaries, products and inventory in the catalog.

Routing: a customer's shard is in the directory (cached); an order's shard is in its id (see
``order_ids``). Placing an order is a saga over two databases: reserve the units in the
catalog, create the order in the customer's shard (recording the decision ``created`` in the
same transaction), commit the reservation. When the order certainly was not created, the
writer records ``abandoned`` in the shard and releases the reservation at once; when that is
unknown (the shard went away mid-commit, the process died), the relay's sweeper settles it
after it expires, by the same decision (see ``decisions``). Cancelling an order queues its
units' return in the shard, in the same transaction; they are handed back to the catalog
right after, or by the sweeper.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from functools import partial
from typing import TypeVar
from uuid import UUID, uuid4

import asyncpg

from gateway.configuration.settings import Settings
from gateway.errors import (
    AlreadyExists,
    CustomerMoving,
    IllegalTransition,
    NotFound,
    RequestInProgress,
    ValidationError,
    VersionConflict,
)
from gateway.order_ids import shard_tag, tag_of
from gateway.postgres import outbox
from gateway.postgres.database import (
    Connection,
    DatabaseUnavailable,
    connect,
    create_pool,
    wait_until_durable,
)
from gateway.postgres.queries import query
from gateway.postgres.replicas import ReadRouter, ReplicaState
from gateway.postgres.tokens import ConsistencyToken
from gateway.postgres.topology import Database, Topology
from gateway.relay.errors import DATABASE_ERRORS
from gateway.sharding import move_rows, reservations, sweeper
from gateway.sharding.directory import CustomerDirectory
from gateway.sharding.move_rules import follow_tombstone
from gateway.sharding.mover import DEFAULT_PAUSE_TIMEOUT, MoveResult, ShardMover, StepHook
from gateway.sharding.placement import Shard, rendezvous_shard
from gateway.sharding.postgres_saga_storage import (
    PostgresCatalog,
    PostgresShard,
    PostgresShardRecords,
)
from gateway.sharding.reconcile import Reconciliation, reconcile
from gateway.sharding.reservations import Reservation
from gateway.sharding.saga import release_at_once
from gateway.sharding.saga_steps import SagaSteps
from gateway.sharding.saga_storage import CatalogStorage
from gateway.write_path import customers, idempotency, orders
from gateway.write_path.models import (
    Customer,
    CustomerRequest,
    Order,
    PlaceOrderRequest,
    StoredRecord,
)
from gateway.write_path.order_status import RESTOCKING_STATUSES, OrderStatus
from gateway.write_path.placement import PLACE_ORDER_SCOPE, OrderPlacer, PlacedOrder

log = logging.getLogger("gateway.sharding")

T = TypeVar("T")
R = TypeVar("R", bound=StoredRecord)

PLACE_ATTEMPTS = 4
"""How often a placement starts over when a concurrent one with its key settled first or its
customer moved (away, then waited for where it went)."""


class ShardedLayout(SagaSteps):
    """The catalog (``pool``) and the shards (``shards``), behind a gateway whose methods
    behave as in one database, with the differences docs/how-to/sharding.md lists.

    Also what only sharded mode has: routing by shard, the sweeper and reconciliation
    (``gateway.sharding``).
    """

    def __init__(
        self,
        catalog: asyncpg.Pool,
        shards: Mapping[str, asyncpg.Pool],
        settings: Settings,
        placer: OrderPlacer,
    ) -> None:
        self._pool = catalog
        self._settings = settings
        self._placer = placer
        self._topology = Topology.of(settings.postgres)
        self._shards = dict(shards)
        self._by_tag = {shard_tag(name): name for name in self._shards}
        self._placement = [
            Shard(name, shard.weight) for name, shard in settings.postgres.shards.items()
        ]
        self._directory = CustomerDirectory(catalog, settings.postgres.directory_cache_size)
        self._saga_catalog = PostgresCatalog(catalog)
        self._reservation_seconds = settings.postgres.reservation_seconds
        self._reads = self._shard_routers()

    @classmethod
    async def open(cls, settings: Settings, placer: OrderPlacer) -> ShardedLayout:
        """Open a pool to the catalog and one to each shard.

        The catalog must answer. A shard that does not gets a pool that connects on first use,
        so the other shards' customers are served meanwhile and this one's once it answers.
        Each shard's replicas are watched from then on (one that is down is used once it
        answers).
        """
        catalog, *shards = Topology.of(settings.postgres).databases
        pools: dict[str, asyncpg.Pool] = {}
        catalog_pool = await create_pool(catalog.postgres)
        try:
            for shard in shards:
                pools[shard.name] = await _shard_pool(shard)
        except BaseException:
            for pool in (catalog_pool, *pools.values()):
                await pool.close()
            raise
        layout = cls(catalog_pool, pools, settings, placer)
        await layout._start_reads()
        return layout

    @property
    def topology(self) -> Topology:
        return self._topology

    @property
    def pool(self) -> asyncpg.Pool:
        """The catalog's pool."""
        return self._pool

    @property
    def replicas(self) -> list[ReplicaState]:
        """Every shard's replicas (each state names its shard), as last checked; the catalog
        has none."""
        return [state for router in self._reads.values() for state in router.states]

    def _shard_routers(self) -> dict[str, ReadRouter]:
        """A read router per shard, over its pool and its replicas, stamping its tokens with
        the shard's tag."""
        settings = {database.name: database.postgres for database in self._topology.databases}
        return {
            name: ReadRouter(pool, settings[name], shard=name)
            for name, pool in self._shards.items()
        }

    async def _start_reads(self) -> None:
        """Check every shard's replicas once, then keep checking them in the background."""
        await asyncio.gather(*(router.start() for router in self._reads.values()))

    def _router_of(self, pool: asyncpg.Pool) -> ReadRouter | None:
        """The read router of the shard whose pool is ``pool``; ``None`` for another pool."""
        for name, shard in self._shards.items():
            if shard is pool:
                return self._reads[name]
        return None

    @property
    def shards(self) -> Mapping[str, asyncpg.Pool]:
        """Each shard's pool, by shard name (``pool`` is the catalog's)."""
        return self._shards

    def shard_of_order(self, order_id: UUID) -> str:
        """The shard an order id names; ``NotFound`` when it names none (not one of ours)."""
        name = self._by_tag.get(tag_of(order_id))
        if name is None:
            raise NotFound("order", order_id, field="order_id")
        return name

    async def shard_of_customer(self, customer_id: UUID) -> str:
        """The customer's shard, from the directory; ``NotFound`` if there is no such customer."""
        return await self._directory.shard_of(customer_id)

    def mover(self, hook: StepHook | None = None) -> ShardMover:
        """Moves customers between these shards (``hook``: called at each step of a move)."""
        catalog = self._topology.databases[0].postgres

        async def open_session() -> asyncpg.Connection:
            return await connect(catalog)

        return ShardMover(
            self._pool,
            self._shards,
            open_session=open_session,
            on_switched=self._directory.remember,
            hook=hook,
        )

    async def move_customer(
        self, customer_id: UUID, target: str, *, pause_timeout: float = DEFAULT_PAUSE_TIMEOUT
    ) -> MoveResult:
        """Move the customer, its addresses, orders and their history to shard ``target``,
        online (see :mod:`gateway.sharding.mover`)."""
        return await self.mover().move(customer_id, target, pause_timeout=pause_timeout)

    async def on_order(self, order_id: UUID, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        """Run ``work`` on the shard that holds the order: the one its id names, or, when
        ``work`` finds no such order there, the one that shard's tombstone names (a moved
        order), hop by hop (see :meth:`_following`)."""

        async def tombstone_of(shard: str, hops: int) -> tuple[str, UUID] | None:
            tombstone = await move_rows.order_tombstone(self._shards[shard], order_id)
            followed = follow_tombstone(tombstone and tombstone[0], hops, self._shards)
            return None if followed is None or tombstone is None else (followed, tombstone[1])

        return await self._following(
            self.shard_of_order(order_id), "order", order_id, tombstone_of, work
        )

    async def on_customer(
        self, customer_id: UUID, work: Callable[[asyncpg.Pool], Awaitable[T]]
    ) -> T:
        """Run ``work`` on the customer's shard: the one the (cached) directory names, or, when
        ``work`` finds no such customer there (moved since the entry was cached), the one that
        shard's tombstone names, which the cache then keeps (see :meth:`_following`)."""

        async def tombstone_of(shard: str, hops: int) -> tuple[str, UUID] | None:
            return await self._follow_customer(shard, customer_id, hops)

        shard = await self._directory.shard_of(customer_id)
        return await self._following(shard, "customer", customer_id, tombstone_of, work)

    async def _following(
        self,
        shard: str,
        entity: str,
        entity_id: UUID,
        tombstone_of: Callable[[str, int], Awaitable[tuple[str, UUID] | None]],
        work: Callable[[asyncpg.Pool], Awaitable[T]],
    ) -> T:
        """Run ``work`` on ``shard``; while it finds no such ``entity``: check a replica's
        answer on the shard itself (it may not have replayed a move), then go where the
        shard's tombstone leads (``tombstone_of``: the next shard and the move that wrote it,
        or ``None``), where a copy its move has not committed yet is waited for once."""
        hops = 0
        arriving: UUID | None = None
        on_primary = False
        while True:
            pool = self._shards[shard]
            try:
                return await _run_on(pool, work, on_primary=on_primary)
            except NotFound as missing:
                if not _is_missing(missing, entity, entity_id):
                    raise
                if arriving is not None:
                    await self.mover().ensure_arrived(arriving)
                    arriving = None
                    continue
                if not on_primary and self._router_of(pool) is not None:
                    on_primary = True
                    continue
                followed = await tombstone_of(shard, hops)
                if followed is None:
                    raise
                (shard, arriving), hops = followed, hops + 1
                on_primary = True  # its replicas may not have replayed the move's copy

    async def _follow_customer(
        self, shard: str, customer_id: UUID, hops: int
    ) -> tuple[str, UUID] | None:
        """The shard shard ``shard``'s tombstone of the customer names (remembered in the
        directory's cache) and the move that wrote it, or ``None``: not moved from there."""
        tombstone = await move_rows.customer_tombstone(self._shards[shard], customer_id)
        followed = follow_tombstone(tombstone and tombstone[0], hops, self._shards)
        if followed is None or tombstone is None:
            return None
        self._directory.remember(customer_id, followed)
        return followed, tombstone[1]

    async def close(self) -> None:
        for router in self._reads.values():
            await router.close()
        await self._pool.close()
        for pool in self._shards.values():
            await pool.close()

    async def create_customer(self, customer_request: CustomerRequest) -> Customer:
        """Create a customer on the shard placement chooses for its new id, entered in the
        directory first (which keeps emails unique across shards)."""
        customer_id = uuid4()
        shard = rendezvous_shard(str(customer_id), self._placement)
        if not await self._directory.record(customer_id, shard, customer_request.email):
            raise AlreadyExists("customer", "email", customer_request.email)
        try:
            async with self._shards[shard].acquire() as connection, connection.transaction():
                customer = await customers.insert_customer(
                    connection, customer_request, customer_id
                )
                await outbox.append(connection, [customers.customer_event(customer)])
        except BaseException as error:
            if release_at_once(error):
                await self._directory.forget(customer_id)
            raise
        return await self._stamped(self._shards[shard], customer)

    async def purge_expired_idempotency_keys(self) -> int:
        """Forget expired idempotency keys in every shard; how many were removed."""
        removed = 0
        for pool in self._shards.values():
            async with pool.acquire() as connection:
                removed += await idempotency.purge_expired(connection)
        return removed

    async def sweep(self) -> sweeper.SweepResult:
        """Settle expired reservations and queued returns now (what the relay does
        periodically)."""
        timeout = self._settings.postgres.shard_timeout_seconds
        return await sweeper.sweep(self._pool, self._shards, timeout_seconds=timeout)

    async def reconcile(self, *, repair: bool = True) -> Reconciliation:
        """Find every live order whose units are not committed to it and every committed
        reservation without a live order, and repair them (unless ``repair`` is false); see
        :mod:`gateway.sharding.reconcile`."""
        shards = {name: self._saga_shard(pool) for name, pool in self._shards.items()}
        return await reconcile(self._saga_catalog, shards, repair=repair)

    async def place(
        self, order_request: PlaceOrderRequest, claim: idempotency.KeyClaim | None
    ) -> PlacedOrder:
        """The saga, started over (at most ``PLACE_ATTEMPTS`` times) when a concurrent request
        with the key settled first, or the customer moved (on the shard its tombstone names,
        once the move's copy there committed)."""
        customer_id = order_request.customer_id
        arriving: tuple[str, UUID] | None = None
        attempts = hops = 0
        moved_last = False
        while attempts < PLACE_ATTEMPTS:
            shard = await self._directory.shard_of(customer_id)
            try:
                placed = await self._place_once(order_request, claim, shard)
                return await self._with_token(self._shards[shard], placed)
            except reservations.KeySettledMeanwhile:
                attempts, moved_last = attempts + 1, False
                continue
            except (NotFound, asyncpg.ForeignKeyViolationError) as error:
                # The customer moved meanwhile: on the source, its order certainly was not
                # created (its reservation was released at once); start over on the target,
                # once the move's copy is there (a wait, not an attempt).
                if arriving is not None and arriving[0] == shard:
                    await self.mover().ensure_arrived(arriving[1])
                    arriving = None
                    continue
                arriving = await self._customer_moved(error, customer_id, shard, hops)
                if arriving is None:
                    raise
                attempts, hops, moved_last = attempts + 1, hops + 1, True
        if claim is None or moved_last:
            raise CustomerMoving(customer_id)
        raise RequestInProgress(claim.key)

    async def _customer_moved(
        self, error: Exception, customer_id: UUID, shard: str, hops: int
    ) -> tuple[str, UUID] | None:
        """Where the customer went and by which move, when a placement on ``shard`` failed
        with ``error`` because its customer moved away from there (the directory's cache then
        names its new shard); ``None`` otherwise."""
        if isinstance(error, NotFound) and not _is_missing(error, "customer", customer_id):
            return None
        return await self._follow_customer(shard, customer_id, hops)

    async def _place_once(
        self, order_request: PlaceOrderRequest, claim: idempotency.KeyClaim | None, shard: str
    ) -> PlacedOrder:
        """The saga, once, on the customer's ``shard``: replay or check there, reserve,
        create, commit."""
        pool = self._shards[shard]
        async with pool.acquire() as connection:
            key = claim.key if claim is not None else None
            inputs = await orders.customer_inputs(connection, order_request, PLACE_ORDER_SCOPE, key)
            if claim is not None:
                earlier = idempotency.earlier_resource(
                    inputs["request_hash"], inputs["resource_id"], claim.key, claim.fingerprint
                )
                if earlier is not None:
                    # Read outside a transaction: its commit may not have reached the
                    # synchronous standby yet (a cancelled wait), so wait for that first.
                    await wait_until_durable(connection)
                    return PlacedOrder(await orders.fetch_order(connection, earlier), True)
            try:
                orders.check_customer_inputs(inputs, order_request)
            except NotFound as missing:
                await self._refuse_foreign_address(missing, order_request)
                raise
        reservation = await self._reserve(shard, order_request, claim)
        return await self._complete(
            self._saga_shard(pool),
            reservation,
            lambda: self._create_order(pool, reservation, order_request, claim),
        )

    async def _refuse_foreign_address(self, missing: NotFound, request: PlaceOrderRequest) -> None:
        """An address not found on the customer's shard may be another customer's, on another
        shard: refused as it is in one database, as not the customer's."""
        if missing.field not in ("billing_address_id", "shipping_address_id"):
            return
        for pool in self._shards.values():
            if await pool.fetchval(query("address_exists"), missing.entity_id):
                raise ValidationError.single(
                    missing.field,
                    f"address {missing.entity_id} does not belong to customer "
                    f"{request.customer_id}",
                ) from None

    async def _create_order(
        self,
        pool: asyncpg.Pool,
        reservation: Reservation,
        request: PlaceOrderRequest,
        claim: idempotency.KeyClaim | None,
    ) -> PlacedOrder:
        """Saga step 2: the order, its key, ``order.placed`` and the decision ``created`` in
        the customer's shard; ``ReservationLapsed`` (nothing written) when the order was
        abandoned first."""
        shard = self._saga_shard(pool)
        return await shard.create_order(reservation.order_id, request, claim, reservation.products)

    def _saga_shard(self, pool: asyncpg.Pool) -> PostgresShard:
        """The saga's storage over the shard ``pool``, writing orders with this gateway."""

        async def insert_placed(
            connection: Connection,
            order_id: UUID,
            request: PlaceOrderRequest,
            claim: idempotency.KeyClaim | None,
            products: Mapping[UUID, orders.Row],
        ) -> PlacedOrder:
            return await self._placer.insert_placed(connection, order_id, request, claim, products)

        async def cancel(order_id: UUID, version: int | None) -> bool:
            try:
                async with pool.acquire() as connection:
                    order = await orders.transition(
                        connection, order_id, OrderStatus.CANCELLED, version
                    )
            except (IllegalTransition, VersionConflict, NotFound):
                return False
            await self.after_change(order)
            return True

        return PostgresShard(pool, insert_placed, cancel)

    def saga_shard(self, name: str) -> PostgresShard:
        """The saga's storage over shard ``name``."""
        return self._saga_shard(self._shards[name])

    @property
    def saga_catalog(self) -> CatalogStorage:
        """The saga's storage over the catalog."""
        return self._saga_catalog

    def order_pools(self) -> Mapping[str, asyncpg.Pool]:
        return dict(self._shards)

    async def order_pool(self, order_id: UUID) -> asyncpg.Pool:
        return self._shards[self.shard_of_order(order_id)]

    async def customer_pool(self, customer_id: UUID) -> asyncpg.Pool:
        return self._shards[await self._directory.shard_of(customer_id)]

    async def read(
        self,
        pool: asyncpg.Pool,
        read: Callable[[Connection], Awaitable[T]],
        token: ConsistencyToken | None,
    ) -> T:
        """Through the shard's read router: on one of its replicas that has ``token`` (one
        this shard issued), else on the shard; on the shard itself for a request that followed
        a tombstone here or that a replica answered "not found" (it may not have replayed a
        move's copy yet)."""
        router = self._router_of(pool)
        if router is None or _FOLLOWED_A_MOVE.get():
            async with pool.acquire() as connection:
                return await read(connection)
        return await router.run(read, token)

    async def committed(self, pool: asyncpg.Pool, connection: Connection, record: R) -> R:
        """``record``, with the shard's token of the write when the shard has replicas."""
        router = self._router_of(pool)
        if router is not None and router.enabled:
            record._consistency_token = await router.token_after(connection)
        return record

    async def _with_token(self, pool: asyncpg.Pool, placed: PlacedOrder) -> PlacedOrder:
        """``placed``, its order with the token of the shard ``pool`` (where it was placed, or
        replayed from)."""
        return PlacedOrder(await self._stamped(pool, placed.order), placed.replayed)

    async def _stamped(self, pool: asyncpg.Pool, record: R) -> R:
        """``record``, written by a transaction committed on ``pool``'s shard, with the
        shard's token when it has replicas: its WAL position read after the commit, on another
        connection (a replica that has replayed it has replayed the write too). Without one if
        the shard does not answer now: the write is committed, and a read without a token is
        still answered."""
        router = self._router_of(pool)
        if router is None or not router.enabled:
            return record
        try:
            async with pool.acquire() as connection:
                return await self.committed(pool, connection, record)
        except DATABASE_ERRORS as error:
            log.warning("no consistency token for a committed write: %s", error)
            return record

    async def after_change(self, order: Order) -> None:
        """A cancelled order's units go back to the catalog now; if that fails, the sweeper
        returns them (the shard queued them with the cancellation)."""
        if order.status not in RESTOCKING_STATUSES:
            return
        try:
            shard = await self.on_order(order.id, partial(_holding, order.id))
            await sweeper.return_units(self._saga_catalog, PostgresShardRecords(shard), [order.id])
        except (NotFound, *DATABASE_ERRORS) as error:
            log.warning("order %s: units not returned yet (the sweeper will): %s", order.id, error)


_FOLLOWED_A_MOVE: ContextVar[bool] = ContextVar("followed_a_move", default=False)
"""Whether the running request reads on its shard itself: it reached the shard by a tombstone,
or a replica did not know what it asked for."""


async def _run_on(
    pool: asyncpg.Pool, work: Callable[[asyncpg.Pool], Awaitable[T]], *, on_primary: bool
) -> T:
    """``work`` on ``pool``; its reads on the shard itself, not its replicas, ``on_primary``."""
    if not on_primary:
        return await work(pool)
    reset = _FOLLOWED_A_MOVE.set(True)
    try:
        return await work(pool)
    finally:
        _FOLLOWED_A_MOVE.reset(reset)


def _is_missing(missing: NotFound, entity: str, entity_id: UUID) -> bool:
    """Whether ``missing`` says that ``entity`` ``entity_id`` itself was not found (not
    something it refers to)."""
    return missing.entity == entity and missing.entity_id == entity_id


async def _holding(order_id: UUID, pool: asyncpg.Pool) -> asyncpg.Pool:
    """``pool``, when its shard holds the order; ``NotFound`` otherwise."""
    if await pool.fetchval(query("order_exists"), order_id):
        return pool
    raise NotFound("order", order_id, field="order_id")


async def _shard_pool(shard: Database) -> asyncpg.Pool:
    try:
        return await create_pool(shard.postgres)
    except DatabaseUnavailable as error:
        log.warning("shard %s does not answer; connecting on first use: %s", shard.name, error)
        return await create_pool(shard.postgres.model_copy(update={"pool_min_size": 0}))
