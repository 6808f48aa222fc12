"""The shape of the code, checked: the import layers (import-linter), small files and functions,
imports at module top, one table of cell facts.

docs/architecture.md draws the layers; pyproject.toml's [tool.importlinter] declares them.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "unrolled"
FILES = sorted(SRC.rglob("*.py"))
MAX_LINES, MAX_FUNCTION_LINES = 400, 80


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _name(path: Path) -> str:
    return str(path.relative_to(SRC.parent))


def test_the_import_layers_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports is missing: pip install -e '.[dev]' installs import-linter")
    out = subprocess.run([exe], capture_output=True, text=True, cwd=SRC.parents[1], timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def test_no_file_over_400_lines():
    long = {_name(p): n for p in FILES if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_no_function_over_80_lines():
    long = {}
    for p in FILES:
        for node in ast.walk(_tree(p)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{_name(p)}:{node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def _allowed(node: ast.AST, source: list[str]) -> bool:
    """An import inside a function is allowed where its line says why (an optional dependency
    or a cycle): a comment on the line itself or the line before."""
    lines = source[max(0, node.lineno - 2):node.lineno]
    return any("#" in line for line in lines)


def test_the_packages_own_imports_are_at_module_top():
    inside = []
    for p in FILES:
        source = p.read_text(encoding="utf-8").splitlines()
        for fn in ast.walk(_tree(p)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                own = (isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("unrolled"))) \
                    or (isinstance(node, ast.Import) and any(a.name.startswith("unrolled") for a in node.names))
                if own and not _allowed(node, source):
                    inside.append(f"{_name(p)}:{node.lineno}")
    assert not inside, f"imports of unrolled inside functions, with no comment saying why: {inside}"


def test_one_table_of_cell_facts():
    offenders = [_name(p) for p in FILES if "__name__.lower()" in p.read_text(encoding="utf-8")]
    assert not offenders, f"type(...).__name__.lower() names a cell by its class (breaks for a subclass): {offenders}"
    from unrolled.cells import CELLS, facts
    import unrolled
    for name, cls in (("rnn", unrolled.RNN), ("lstm", unrolled.LSTM), ("gru", unrolled.GRU)):
        class Subclass(cls):  # a user's subclass is still the same cell
            pass
        layer = Subclass(4, 5)
        assert facts(layer) is CELLS[name]
        assert layer.weight_ih_l0.shape[0] == CELLS[name].num_gates * 5
