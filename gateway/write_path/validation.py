"""Turning pydantic's validation errors into the gateway's :class:`ValidationError`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

from gateway.errors import FieldError, ValidationError

M = TypeVar("M", bound=pydantic.BaseModel)


def field_path(location: tuple[int | str, ...]) -> str:
    """``('items', 0, 'quantity')`` -> ``items[0].quantity``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(request)"


def parse(model: type[M], data: M | Mapping[str, Any]) -> M:
    """Validate ``data`` as ``model``; an instance of ``model`` is returned as it is."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:
        raise ValidationError(
            [FieldError(field_path(e["loc"]), e["msg"]) for e in error.errors()]
        ) from None
