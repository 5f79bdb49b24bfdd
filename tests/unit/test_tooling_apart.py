"""The product apart from its tooling: the benchmarks and the simulation import without pytest
and without the tests, through the support package they share with the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WITHOUT_PYTEST = """
import importlib, pkgutil, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pytest", "_pytest", "tests"):
            raise ImportError(f"{name} imported by the tooling")
        return None

sys.meta_path.insert(0, Refuse())
for package in ("bench", "bench.chaos", "simulation", "support"):
    module = importlib.import_module(package)
    for found in pkgutil.iter_modules(module.__path__, package + "."):
        importlib.import_module(found.name)
print("imported")
"""


def test_benchmarks_simulation_and_support_import_without_pytest_or_the_tests() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYTEST],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"
