"""The wheel carries the console's templates and static files, not only its modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "gateway" / "api" / "console"


def test_the_wheel_ships_every_template_and_static_file_of_the_console(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    assets = {
        str(path.relative_to(ROOT))
        for folder in ("templates", "static")
        for path in (CONSOLE / folder).iterdir()
    }
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())

    assert {
        "gateway/api/console/templates/base.html",
        "gateway/api/console/static/console.css",
    } <= assets
    assert assets <= shipped
