"""The suite's two groups of tests, one per worker process (``-n 2 --dist loadgroup``)."""

CLUSTER_GROUP = "postgres-ha"
"""The tests over the postgres-ha cluster, which mostly wait on Patroni (a module says so with
``pytestmark = pytest.mark.xdist_group(CLUSTER_GROUP)``). They run beside the others."""

OTHERS_GROUP = "servers"
"""Every other test (``tests/conftest.py`` puts them here). They run one at a time, in one
process, as they always have: several of them load the machine or the shared servers, and
relays read below every running transaction of their server, whichever database it is in."""
