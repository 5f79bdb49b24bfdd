"""What the tests and the benchmarks share, and neither owns: the real servers started by
``scripts/services.sh``, an API process, a shop of customers and products, the stores' clients,
sharded deployments of fresh databases. Not part of the product (the wheel does not ship it)."""
