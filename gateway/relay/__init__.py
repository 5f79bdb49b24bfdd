"""The relay: drains the outbox into sinks, across crashes and outages.

Its parts, each in a module of its own:

- ``process``: the relay process (``Relay``): its workers, heartbeat and shutdown.
- ``worker``: one sink's loop (``SinkWorker``), wiring the parts below together.
- ``leases``: where leases are taken; which partitions this relay holds (``partitions_for``).
- ``read_ahead``: where a batch is read, ahead of the workers and once for all that keep pace.
- ``pipeline``: where a position moves; batches in flight between read and commit.
- ``retries``: where a batch is retried; the retry and dead-letter decision.
- ``sink_calls``: calls into a sink that nothing the sink raises escapes, each bounded.
- ``stalls``: when a worker stuck in a sink call gives its leases up.
- ``sessions``: when a relay is dead: its PostgreSQL session ended (``session_ended``).
- ``liveness``: the process's liveness session, checked for dead relays (``LivenessSession``).
- ``upkeep``: wake-ups on commit (LISTEN), pruning, backlog gauges.
- ``storage``: everything the relay reads and writes, as one interface (``RelayStorage``).
- ``tables``: the SQL of the relay's own tables (positions, leases, dead letters).
"""

from gateway.relay.process import Relay
from gateway.relay.worker import SinkWorker

__all__ = ["Relay", "SinkWorker"]
