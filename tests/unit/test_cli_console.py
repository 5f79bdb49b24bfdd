"""The width the CLI prints at: a terminal's own or ``COLUMNS``; off a terminal, no wrapping."""

from __future__ import annotations

from gateway.cli.console import UNWRAPPED_WIDTH, output_width


def test_a_terminal_keeps_its_width() -> None:
    assert output_width(True, {}) is None
    assert output_width(True, {"COLUMNS": "100"}) is None


def test_columns_sets_the_width_off_a_terminal() -> None:
    # None: rich reads COLUMNS itself.
    assert output_width(False, {"COLUMNS": "132"}) is None


def test_a_pipe_or_a_file_is_not_wrapped() -> None:
    assert output_width(False, {}) == UNWRAPPED_WIDTH
    assert output_width(False, {"COLUMNS": ""}) == UNWRAPPED_WIDTH
    assert UNWRAPPED_WIDTH >= 1000
