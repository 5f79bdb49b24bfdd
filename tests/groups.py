"""The suite's two groups of tests, one per worker process (``-n 2 --dist loadgroup``)."""

CLUSTER_GROUP = "postgres-ha"
"""The tests of the postgres-ha cluster itself (``test_ha_cluster.py``: switchovers, failovers
and partitions, mostly waiting on Patroni), which touch no other server: they run beside the
others. A module joins with ``pytestmark = pytest.mark.xdist_group(CLUSTER_GROUP)``; one that
uses a server another test stops (the stores, the main PostgreSQL that FerretDB keeps its data
in) must not."""

OTHERS_GROUP = "servers"
"""Every other test (``tests/conftest.py`` puts them here). They run one at a time, in one
process, as they always have: several stop and start the shared servers, and relays read below
every running transaction of their server, whichever database it is in."""
