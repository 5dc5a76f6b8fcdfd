"""The tests stand without the benchmarks: no module under tests/ imports ``bench``.

What a test needs besides the packages (server and Redis processes, the soak)
lives in ``tests/support/``, which the benchmarks import in turn.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(source: str) -> list[str]:
    """Every module an ``import`` or ``from ... import`` of ``source`` names (relative ones left out)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
    return found


def bench_imports(source: str) -> list[str]:
    return [name for name in imported_modules(source) if name == "bench" or name.startswith("bench.")]


def test_no_test_module_imports_bench():
    files = sorted(TESTS.rglob("*.py"))
    assert TESTS / "support" / "processes.py" in files
    offending = {str(f.relative_to(TESTS)): found for f in files if (found := bench_imports(f.read_text()))}
    assert offending == {}


def test_every_way_of_importing_bench_is_seen():
    source = "import bench\nimport bench.market as m\nfrom bench.harness import X\nfrom bench import cpu\n"
    assert bench_imports(source) == ["bench", "bench.market", "bench.harness", "bench"]
    assert bench_imports("import benchmark\nfrom tests.support.processes import ROOT\nfrom . import bench\n") == []
