"""What the console's addresses and forms name, checked before any database is asked: a
value PostgreSQL cannot take (a NUL) or that no sink could be named is the client's mistake,
answered 422 with the field's name."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from gateway.configuration.settings import SinkName

SINK_NAME_RULE = "a lowercase letter, then up to 99 lowercase letters, digits, '_' or '-'"
_SINK_NAME: TypeAdapter[str] = TypeAdapter(SinkName)


def sink_name_error(name: str) -> str | None:
    """Why ``name`` (from an address) is not a sink name, naming the field; ``None`` if it is
    one (by the rule of the configuration's sink names)."""
    try:
        _SINK_NAME.validate_python(name)
    except ValidationError:
        return f"sink: {name[:80]!r} is not a sink name ({SINK_NAME_RULE})"
    return None


def missing(field: str) -> str:
    """The message for a required field the request left out."""
    return f"{field}: required, and missing from the request"
