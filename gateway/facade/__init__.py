"""The gateway's facade: :class:`~gateway.facade.gateway.Gateway`, over the layout of the
databases the settings configure (one database, or a catalog and shards)."""
