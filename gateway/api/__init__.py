"""The HTTP API (``fanout serve``): an ASGI app built by :func:`create_app`."""

from gateway.api.app import create_app

__all__ = ["create_app"]
