"""The HTTP API's reference, read from the OpenAPI document the application itself serves:
every operation with its parameters, its request body and every status it can answer."""

from __future__ import annotations

import json
from typing import Any

from docsite.markdown import cell, code, table
from gateway.api.app import create_app
from gateway.configuration.settings import Settings

METHODS = ("get", "put", "post", "patch", "delete")

# The document states the routes a fully configured server has: the payment webhook needs a
# secret and the authentication statuses a key. Neither is ever used to connect or shown.
DOCUMENTED_SETTINGS = {
    "postgres": {"url": "postgresql://docs@localhost/fanout"},
    "api": {"key": "documentation-only-key"},
    "payments": {"webhook_secret": ["documentation-only-secret"]},
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document ``fanout serve`` publishes at ``/openapi.json``, for a server with
    an API key and a payment webhook secret."""
    document: dict[str, Any] = create_app(Settings.model_validate(DOCUMENTED_SETTINGS)).openapi()
    return document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation of ``document`` as (method, path, operation), in the document's order."""
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def undocumented(document: dict[str, Any]) -> list[str]:
    """Each operation without a description, and each of their parameters without one."""
    missing: list[str] = []
    for method, path, operation in operations(document):
        if not operation.get("description", "").strip():
            missing.append(f"{method} {path}")
        missing += [
            f"{method} {path} {parameter['name']}"
            for parameter in operation.get("parameters", [])
            if parameter["in"] != "path" and not parameter.get("description", "").strip()
        ]
    return missing


def render(document: dict[str, Any]) -> str:
    """The reference of every operation of ``document`` as Markdown, grouped by tag."""
    groups: dict[str, list[str]] = {}
    for method, path, operation in operations(document):
        tag = (operation.get("tags") or ["other"])[0]
        groups.setdefault(tag, []).append(_operation(method, path, operation))
    parts: list[str] = []
    for tag, sections in groups.items():
        parts.append(f"### {tag.capitalize()}")
        parts += sections
    return "\n\n".join(parts) + "\n"


def document_json(document: dict[str, Any]) -> str:
    """``document`` as the indented JSON file the site offers for download."""
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    parts = [f"#### `{method} {path}`", operation.get("description", "").strip()]
    parameters = operation.get("parameters", [])
    if parameters:
        rows = [
            [
                code(p["name"]),
                p["in"],
                "yes" if p.get("required") else "no",
                cell(p.get("description", "")),
            ]
            for p in parameters
        ]
        parts.append(table(["parameter", "in", "required", "meaning"], rows))
    body = operation.get("requestBody")
    if body:
        parts.append(f"Request body: {_schema_names(body.get('content', {}))}.")
    responses = operation.get("responses", {})
    rows = [
        [
            code(status),
            cell(response.get("description", "")),
            _schema_names(response.get("content", {})),
        ]
        for status, response in sorted(responses.items())
    ]
    parts.append(table(["status", "meaning", "body"], rows))
    return "\n\n".join(part for part in parts if part)


def _schema_names(content: dict[str, Any]) -> str:
    names: list[str] = []
    for media_type, media in content.items():
        schema = media.get("schema", {})
        reference = schema.get("$ref", "")
        name = reference.rsplit("/", 1)[-1] if reference else schema.get("type", "")
        names.append(f"{code(media_type)} {code(name)}" if name else code(media_type))
    return ", ".join(names)
