"""The code keeps its room (DEVELOPERS.md): no class in seqtool/ over 150 lines, no
function over 60, so each part reads on a screen."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "seqtool"
MAX_CLASS, MAX_FUNCTION = 150, 60


def _too_long() -> list[str]:
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.name}:{node.lineno} {node.name}: {lines} lines (at most {limit})")
    return found


def test_no_class_or_function_is_too_long():
    assert len(list(PACKAGE.glob("*.py"))) > 10  # the package was found
    assert _too_long() == []
