"""Imports go one way: flows -> tasks -> audiotag."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(folder: str) -> set[tuple[str, str]]:
    found = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(str(path), a.name.split(".")[0]) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path), node.module.split(".")[0]))
    return found


def test_audiotag_imports_neither_prefect_nor_upper_layers() -> None:
    bad = [(p, m) for p, m in _imports("audiotag") if m in {"prefect", "tasks", "flows"}]
    assert bad == []


def test_tasks_do_not_import_flows() -> None:
    assert [(p, m) for p, m in _imports("tasks") if m == "flows"] == []


def test_importing_audiotag_loads_no_prefect() -> None:
    import subprocess
    import sys

    code = (
        "import sys, importlib, pkgutil, audiotag\n"
        "for m in pkgutil.iter_modules(audiotag.__path__):\n"
        "    importlib.import_module('audiotag.' + m.name)\n"
        "print(any(k == 'prefect' or k.startswith('prefect.') for k in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "False"
