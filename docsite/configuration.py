"""The configuration's reference, read from the settings model: every key with its type, its
default, the environment variable that overrides it, and what it means (the docstring under the
field in ``gateway/configuration/settings.py``)."""

from __future__ import annotations

import ast
import inspect
import types
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from docsite.markdown import cell, code, table

SINK_NAME = "<name>"
SHARD_NAME = "<shard>"
LIBRARIES = {"pydantic", "pydantic_settings"}
"""Packages whose models' fields are not the configuration's own."""


@dataclass(frozen=True)
class Key:
    """One configuration key: where it lives, what it takes, and what it means."""

    section: str
    """The table it is listed in: ``postgres``, ``sinks (redis)``…"""
    path: str
    """The key as written in the file: ``postgres.pool_max_size``."""
    type: str
    default: str
    variable: str
    """The environment variable that overrides it ('' when only its section's can)."""
    meaning: str


@dataclass(frozen=True)
class Section:
    """A group of keys under one heading, with what the section is for."""

    title: str
    meaning: str
    keys: list[Key]


def sections(settings: type[BaseModel]) -> list[Section]:
    """Every section of ``settings``, with every key of each, in the model's order."""
    found: list[Section] = []
    for name, field in settings.model_fields.items():
        annotation = _unwrap(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += _model_sections(name, name, annotation, f"FANOUT_{name.upper()}_")
        elif get_origin(annotation) is dict:
            found += _mapping_sections(name, get_args(annotation)[1])
        else:
            found.append(Section(name, "", [_key(name, name, settings, name, field, "")]))
    return found


def undocumented(settings: type[BaseModel]) -> list[str]:
    """Each key of ``settings`` without a docstring, and each section without one: what the
    reference could not explain."""
    missing = [s.title for s in sections(settings) if not s.meaning]
    return missing + [k.path for s in sections(settings) for k in s.keys if not k.meaning]


def render(settings: type[BaseModel]) -> str:
    """The reference of every configuration key as Markdown: a table per section."""
    parts: list[str] = []
    for section in sections(settings):
        rows = [
            [
                code(k.path),
                cell(k.type),
                cell(k.default),
                code(k.variable) if k.variable else "",
                cell(k.meaning),
            ]
            for k in section.keys
        ]
        parts += [f"### `{section.title}`", " ".join(section.meaning.split())]
        parts.append(table(["key", "type", "default", "environment", "meaning"], rows))
    return "\n\n".join(part for part in parts if part) + "\n"


def _model_sections(
    title: str, prefix: str, model: type[BaseModel], variable_prefix: str
) -> list[Section]:
    keys: list[Key] = []
    nested: list[Section] = []
    for name, field in model.model_fields.items():
        annotation = _unwrap(field.annotation)
        if get_origin(annotation) is dict and _is_model(get_args(annotation)[1]):
            value = _unwrap(get_args(annotation)[1])
            nested += _model_sections(
                f"{prefix}.{name}.{SHARD_NAME}", f"{prefix}.{name}.{SHARD_NAME}", value, ""
            )
        variable = f"{variable_prefix}{name.upper()}" if variable_prefix else ""
        keys.append(_key(title, f"{prefix}.{name}", model, name, field, variable))
    return [Section(title, _docstring_of_class(model), keys), *nested]


def _mapping_sections(name: str, value: Any) -> list[Section]:
    """The sections of a mapping of named models (``sinks``): the keys every kind shares, then
    one section per kind (its ``type``) with the keys of its own."""
    members = _union_members(value)
    prefix = f"{name}.{SINK_NAME}"
    variable = f"FANOUT_{name.upper()}_{SINK_NAME.upper()}_"
    shared = set.intersection(*(set(member.model_fields) for member in members)) - {"type"}
    found: list[Section] = []
    if len(members) > 1 and shared:
        first = members[0]
        kinds = [_literal_type(member) for member in members]
        keys = [
            Key(
                section=prefix,
                path=f"{prefix}.type",
                type=" | ".join(f'"{kind}"' for kind in kinds),
                default="required",
                variable=variable + "TYPE",
                meaning="The kind of store; the sections below list each kind's own keys.",
            )
        ]
        keys += [
            _key(
                prefix,
                f"{prefix}.{key}",
                first,
                key,
                first.model_fields[key],
                variable + key.upper(),
            )
            for key in first.model_fields
            if key in shared
        ]
        shared.add("type")
        found.append(Section(f"{prefix} (every type)", _docstring_of_class(first.__mro__[1]), keys))
    else:
        shared = set()
    for member in members:
        kind = _literal_type(member)
        title = f"{prefix} (type: {kind})" if kind else prefix
        keys = [
            _key(title, f"{prefix}.{key}", member, key, field, variable + key.upper())
            for key, field in member.model_fields.items()
            if key not in shared
        ]
        found.append(Section(title, _docstring_of_class(member), keys))
    return found


def _key(
    section: str, path: str, model: type[BaseModel], name: str, field: FieldInfo, variable: str
) -> Key:
    return Key(
        section=section,
        path=path,
        type=type_name(field.annotation),
        default=_default(field),
        variable=variable,
        meaning=field.description or _field_docstrings(model).get(name, ""),
    )


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type: ``int``, ``float | null``, ``"v1" | "v2"``,
    ``list[secret URL]``."""
    annotation = _unwrap(annotation)
    origin = get_origin(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(f'"{value}"' for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(member) for member in get_args(annotation))
    if origin in (list, dict):
        inner = ", ".join(type_name(argument) for argument in get_args(annotation))
        return f"{origin.__name__}[{inner}]"
    if isinstance(annotation, type):
        if issubclass(annotation, SecretStr):
            return "secret URL" if annotation is not SecretStr else "secret"
        if issubclass(annotation, BaseModel):
            return "mapping"
        if issubclass(annotation, Path):
            return "path"
        return annotation.__name__.lower()
    return str(annotation)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return ""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _unwrap(annotation: Any) -> Any:
    """``annotation`` without ``Annotated[...]`` (its metadata is validation, not type)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    annotation = _unwrap(annotation)
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _union_members(annotation: Any) -> list[type[BaseModel]]:
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [member for member in get_args(annotation) if _is_model(member)]
    return [annotation] if _is_model(annotation) else []


def _literal_type(model: type[BaseModel]) -> str:
    field = model.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        return ""
    return str(get_args(field.annotation)[0])


def _docstring_of_class(model: type[BaseModel]) -> str:
    own = model.__dict__.get("__doc__")
    return inspect.cleandoc(own) if isinstance(own, str) else ""


def _field_docstrings(model: type[BaseModel]) -> dict[str, str]:
    """The docstring written under each field, of ``model`` and of the classes it inherits."""
    found: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if issubclass(klass, BaseModel) and klass.__module__.split(".")[0] not in LIBRARIES:
            _, line = inspect.getsourcelines(klass)
            source = inspect.getsourcefile(klass) or ""
            found |= _class_field_docstrings(source, klass.__name__, line)
    return found


@cache
def _class_field_docstrings(source_file: str, name: str, line: int) -> dict[str, str]:
    """The field docstrings of the class ``name`` whose source starts at ``line`` (its first
    decorator's, if any) in ``source_file``."""
    tree = ast.parse(Path(source_file).read_text())
    classes = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == name and node.lineno >= line
    ]
    if not classes:
        return {}
    return dict(_documented_fields(min(classes, key=lambda node: node.lineno).body))


def _documented_fields(body: list[ast.stmt]) -> Iterator[tuple[str, str]]:
    for statement, following in pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            yield statement.target.id, inspect.cleandoc(following.value.value)
