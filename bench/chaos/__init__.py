"""The chaos run: orders through the HTTP API while relays, stores, PostgreSQL and the API
itself are killed and restarted, then every order checked in every store.

On the servers of ``scripts/services.sh``: a fresh database, ``fanout serve`` and two
``fanout relay`` processes with every store enabled. Orders are placed at a steady rate (some
moved through transitions) by a client that does what a careful client does: a request that
fails with a 503 or a lost connection is sent again, an order with the same idempotency key,
a transition with the same expected version. Meanwhile a fault schedule runs: SIGKILL a relay
and restart it; stop each store's server for a while; restart PostgreSQL (fast shutdown);
SIGKILL the API and restart it. At the end the run waits for the relays to drain and checks
every order of PostgreSQL in every store: nothing lost, stale or different.

    .venv/bin/python -m bench.chaos                   # 100,000 orders, each fault 3 times
    .venv/bin/python -m bench.chaos --orders 3000 --rate 40 --repeats 1   # a short run
    .venv/bin/python -m bench.chaos --sharded --name chaos_sharded         # sharded mode

In sharded mode (``--sharded``) the catalog is on ``postgres`` and a shard on each of
``postgres-shard-a`` and ``postgres-shard-b``; the faults are the relays and the API killed
(the API while a placement holds units, which lapse after the short ``reservation_seconds``),
each shard's server stopped and started, the catalog's server restarted, and customers the
client placed orders for moved to the other shard with ``fanout shards move``, one after
another for ``move_seconds``; after the drain a final sweep must leave no reservation held,
every product's stock must be accounted for, a reconciliation must find no break, and every
order of each customer a move was tried for must resolve through the API at its version.
``--faults`` keeps only some kinds of fault, e.g. those that stop no server::

    .venv/bin/python -m bench.chaos --sharded --faults kill-relay,kill-api,move-customers

The report goes to ``bench/results/chaos.json`` and its chart to ``bench/results/chaos.png``.
"""

from bench.chaos.plan import ChaosPlan, Fault, fault_schedule
from bench.chaos.run import run_chaos, verdict

__all__ = ["ChaosPlan", "Fault", "fault_schedule", "run_chaos", "verdict"]
