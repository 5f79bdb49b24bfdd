"""The width the commands print their standard output at."""

from __future__ import annotations

import os
from collections.abc import Mapping

from rich.console import Console

UNWRAPPED_WIDTH = 10_000
"""The width off a terminal: wide enough that no line wraps and every table takes the width its
cells need."""


def output_width(is_terminal: bool, environ: Mapping[str, str]) -> int | None:
    """The width to print at: ``None`` (the terminal's own, or ``COLUMNS``, as rich finds it) on
    a terminal or when ``COLUMNS`` is set; otherwise :data:`UNWRAPPED_WIDTH`, since a pipe or a
    file has no width to fit and a table squeezed to 80 columns truncates and wraps its cells."""
    if is_terminal or environ.get("COLUMNS", "").isdigit():
        return None
    return UNWRAPPED_WIDTH


def stdout_console() -> Console:
    """A console on standard output, at :func:`output_width`."""
    console = Console()
    width = output_width(console.is_terminal, os.environ)
    if width is not None:
        console.width = width
    return console
