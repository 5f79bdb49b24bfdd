"""The operator console: server-rendered pages under ``/console`` of ``fanout serve``."""

from gateway.api.console.routes import console

__all__ = ["console"]
