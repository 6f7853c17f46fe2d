"""The code keeps its room and its map (DEVELOPERS.md): no class in seqtool/ over 150 lines,
no function over 60, so each part reads on a screen; every module has its row in the
layout table; the docs cite no file outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "seqtool"
MAX_CLASS, MAX_FUNCTION = 150, 60


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _too_long() -> list[str]:
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    name = path.relative_to(PACKAGE)
                    found.append(f"{name}:{node.lineno} {node.name}: {lines} lines (at most {limit})")
    return found


def test_no_class_or_function_is_too_long():
    assert len([p for p in _modules() if p.parent != PACKAGE]) > 10  # the subfolders were walked
    assert _too_long() == []


def test_every_module_has_its_row_in_the_layout():
    """A module without a row in DEVELOPERS.md's layout table is a room nobody can find; a
    row without a module is a stale map."""
    text = (ROOT / "DEVELOPERS.md").read_text()
    layout = text[text.index("## Layout") : text.index("## Where to add what")]
    rows = set(re.findall(r"^\| `([\w/]+\.py)` \|", layout, flags=re.M))
    modules = {str(p.relative_to(PACKAGE)) for p in _modules() if p.name != "__init__.py" or p.parent == PACKAGE}
    assert modules - rows == set(), "modules without a row"
    assert rows - modules == set(), "rows without a module"


def test_each_folder_says_what_it_holds():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(ROOT)} has no docstring saying what the folder holds"


def test_docs_cite_files_of_the_repository_only():
    """Every file a doc names (a path ending in .md or .py) exists in the repository."""
    docs = [ROOT / "README.md", ROOT / "DEVELOPERS.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for doc in docs:
        for link in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", doc.read_text()):
            if not (doc.parent / link).resolve().is_file():
                missing.append(f"{doc.name} links {link}")
        for name in re.findall(r"\b([A-Z][A-Z_]+\.md)\b", doc.read_text()):
            if not any((ROOT / d / name).is_file() for d in (".", "docs", "bench")):
                missing.append(f"{doc.name} names {name}")
    assert missing == []


def test_every_name_the_map_points_at_exists():
    """DEVELOPERS.md's decisions point at their code (`module.name`): each name is there."""
    import importlib

    modules = {p.stem: p for p in _modules() if p.name != "__init__.py"}
    text = (ROOT / "DEVELOPERS.md").read_text()
    stale = []
    for module, name in set(re.findall(r"`(\w+)\.(\w+)(?:\.\w+)?`", text)):
        if module not in modules or name in ("py", "md"):
            continue
        dotted = ".".join(modules[module].relative_to(ROOT).with_suffix("").parts)
        if not hasattr(importlib.import_module(dotted), name):
            stale.append(f"{module}.{name}")
    assert sorted(stale) == []
