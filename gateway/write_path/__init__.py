"""The write path: the ``Gateway`` facade, and orders, customers and the catalog committed
to PostgreSQL with their events in the outbox, in one transaction."""
