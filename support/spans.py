"""The spans the OpenTelemetry Collector of ``scripts/services.sh`` (``otelcol``) received, as
its file exporter writes them: one OTLP/JSON export request a line."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.servers import server_url

Span = dict[str, Any]
"""A span as OTLP/JSON spells it, with its ``resource`` added."""


@dataclass(frozen=True)
class Collector:
    """The running collector."""

    endpoint: str
    """Its OTLP/gRPC receiver, ``http://127.0.0.1:<port>``."""
    spans_file: Path
    """Where its file exporter writes what it receives."""

    @classmethod
    def running(cls) -> Collector:
        """The collector ``scripts/services.sh up otelcol`` started (started now if need be)."""
        url = server_url("otelcol")
        spans_file = os.environ.get("FANOUT_TEST_OTEL_SPANS_FILE")
        if not spans_file:
            raise AssertionError(
                "FANOUT_TEST_OTEL_SPANS_FILE is not set: where does the collector write?"
            )
        return cls(os.environ.get("FANOUT_TEST_OTLP_ENDPOINT", url), Path(spans_file))

    def spans(self) -> list[Span]:
        """Every span the file holds so far (a line still being written is skipped)."""
        spans: list[Span] = []
        try:
            lines = self.spans_file.read_text().splitlines()
        except FileNotFoundError:
            return spans
        for line in lines:
            try:
                request = json.loads(line)
            except json.JSONDecodeError:
                continue
            for resource_spans in request.get("resourceSpans", []):
                resource = resource_spans.get("resource", {})
                for scope_spans in resource_spans.get("scopeSpans", []):
                    for span in scope_spans.get("spans", []):
                        spans.append({**span, "resource": resource})
        return spans

    def wait_for(self, found: Callable[[list[Span]], bool], within: float, what: str) -> list[Span]:
        """Every span received, once ``found`` says they hold what is awaited."""
        deadline = time.monotonic() + within
        while True:
            spans = self.spans()
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not in {self.spans_file} after {within} s")
            time.sleep(0.05)


def attribute(owner: Span, key: str) -> Any:
    """The value of the OTLP/JSON attribute ``key`` of a span or resource (None if absent)."""
    for item in owner.get("attributes", []):
        if item["key"] == key:
            return next(iter(item["value"].values()), None)
    return None
