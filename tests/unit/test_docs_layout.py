"""The layout page names every module of the product, so that it cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = ROOT / "docs" / "reference" / "layout.md"


def test_the_layout_page_names_every_module_of_the_product() -> None:
    page = LAYOUT.read_text()
    modules = sorted(
        path.relative_to(ROOT)
        for package in ("gateway", "adapters")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
    )
    missing = [str(module) for module in modules if module.name not in page]
    assert not missing, f"{LAYOUT.name} does not name: {', '.join(missing)}"
