"""``${NAME}`` references to environment variables inside configuration files.

``${NAME}`` is replaced by the variable's value and ``${NAME:-default}`` falls back to
``default`` when the variable is unset or empty (as in a shell or docker compose); ``$${`` is
a literal ``${``. Only string values are interpolated, so a reference cannot change the
file's structure. The compose stack uses this to keep passwords out of ``config/compose.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MissingVariable(Exception):
    """A ``${NAME}`` without a default names a variable that is not set."""

    def __init__(self, key: str, variable: str) -> None:
        super().__init__(f"environment variable {variable} is not set")
        self.key = key
        self.variable = variable


def interpolate(value: Any, environment: Mapping[str, str], key: str = "") -> Any:
    """``value`` with every reference in its strings replaced; ``key`` locates errors."""
    if isinstance(value, str):
        return REFERENCE.sub(_replacer(environment, key), value)
    if isinstance(value, Mapping):
        return {
            name: interpolate(item, environment, f"{key}.{name}" if key else str(name))
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [interpolate(item, environment, f"{key}[{i}]") for i, item in enumerate(value)]
    return value


def _replacer(environment: Mapping[str, str], key: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        found = environment.get(name)
        if found:
            return found
        if default is not None:
            return default
        if found is not None:
            return found
        raise MissingVariable(key, name)

    return replace
