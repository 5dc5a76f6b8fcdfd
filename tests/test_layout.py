"""The house rules that a linter does not check: files of a readable size and a service root that stays small.

The layers and the absence of import cycles are import-linter's contracts
(``[tool.importlinter]`` in pyproject.toml), run by ``make lint``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 350
MAX_SERVICE_ROOT_MODULES = 10


def tracked_python_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / name for name in listed.stdout.split()]


def test_no_python_file_is_longer_than_the_house_allows() -> None:
    files = tracked_python_files()
    assert len(files) > 100  # the listing found the project, not an empty checkout
    long = {str(f.relative_to(ROOT)): n for f in files if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"files over {MAX_LINES} lines: split them by concern"


def test_the_service_root_holds_few_modules() -> None:
    modules = sorted(p.name for p in (ROOT / "service").glob("*.py"))
    assert "config.py" in modules
    assert len(modules) <= MAX_SERVICE_ROOT_MODULES, f"service/ holds {modules}: group them in a room"
