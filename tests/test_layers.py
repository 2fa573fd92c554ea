"""Imports go one way: flows -> tasks -> audiotag; only audiotag.tracking imports mlflow.

The checker reads the source with ``ast`` (nothing is imported) and takes a root
folder, so that the same functions run on the real tree and on a small fake tree
that proves they find what they look for.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("audiotag", "tasks", "flows")  # lowest first
TRACKING = "audiotag.tracking"


@dataclass(frozen=True)
class Import:
    """One import statement's target, as the importing module sees it."""

    importer: str
    target: str  # a dotted module name: a project module, or an outside one
    line: int
    in_function: bool

    def __str__(self) -> str:
        where = " (in a function)" if self.in_function else ""
        return f"{self.importer}:{self.line} imports {self.target}{where}"


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under the layer folders (a package is its
    ``__init__``)."""
    modules = {}
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(parts)
            # Python takes a package over a module file of the same name.
            if name not in modules or path.name == "__init__.py":
                modules[name] = path
    return modules


def _in_package(name: str, ancestor: str) -> bool:
    return name == ancestor or name.startswith(ancestor + ".")


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _function_lines(tree: ast.AST) -> set[int]:
    """Line numbers of import statements inside a function body."""
    lines = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    lines.add(node.lineno)
    return lines


def _targets(
    node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: dict[str, Path]
) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        base = node.module or ""
        if base == "__future__":
            return []
    else:
        # Relative to the importer's package; an __init__ is its own package.
        package = importer if is_package else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    # `from pkg import name`: the submodule pkg.name when there is one, else pkg.
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
    return subs if len(subs) == len(node.names) else [base, *subs]


def imports(root: Path) -> list[Import]:
    """Every import of every project module: module-level and in functions, relative ones
    resolved."""
    modules = project_modules(root)
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        in_function = _function_lines(tree)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, name, is_package, modules):
                    found.append(Import(name, target, node.lineno, node.lineno in in_function))
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


def upward_imports(root: Path) -> list[str]:
    """audiotag importing tasks or flows; tasks importing flows."""
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    return [
        str(imp)
        for imp in imports(root)
        if _top(imp.target) in rank and rank[_top(imp.target)] > rank[_top(imp.importer)]
    ]


def prefect_imports(root: Path) -> list[str]:
    """audiotag importing prefect or a prefect integration (prefect_dask, ...)."""
    return [
        str(imp)
        for imp in imports(root)
        if _top(imp.importer) == "audiotag"
        and (_top(imp.target) == "prefect" or _top(imp.target).startswith("prefect_"))
    ]


def mlflow_imports(root: Path) -> list[str]:
    """mlflow imported anywhere but audiotag.tracking (tasks and flows included)."""
    return [
        str(imp)
        for imp in imports(root)
        if _top(imp.target) == "mlflow" and not _in_package(imp.importer, TRACKING)
    ]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Project module -> the project modules importing it runs (module- and function-level).

    Importing ``a.b.c`` runs the ``__init__`` of ``a.b`` too, unless the importer is
    inside ``a.b`` already (then that package is loaded, or loading, before it).
    """
    modules = project_modules(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in imports(root):
        if imp.target not in modules:
            continue
        own = set(_ancestors(imp.importer))
        for target in [*_ancestors(imp.target), imp.target]:
            if target in modules and target not in own and target != imp.importer:
                graph[imp.importer].add(target)
    return graph


def import_circles(root: Path) -> list[list[str]]:
    """Groups of project modules that import each other, directly or through others
    (Tarjan's strongly connected components of more than one module)."""
    graph = import_graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(circles)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# The real tree.


def test_audiotag_imports_no_upper_layer_and_tasks_do_not_import_flows() -> None:
    assert upward_imports(ROOT) == []


def test_audiotag_imports_no_prefect() -> None:
    assert prefect_imports(ROOT) == []


def test_only_audiotag_tracking_imports_mlflow() -> None:
    assert mlflow_imports(ROOT) == []


def test_the_project_modules_import_no_circle() -> None:
    assert import_circles(ROOT) == []


def _loaded_by_imports(modules: list[str], forbidden: str) -> str:
    """Imports the modules one by one in a fresh interpreter; the first that loads
    ``forbidden`` (and the name it loaded), or '' when none does."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"    hit = [k for k in sys.modules if k.split('.')[0] == {forbidden!r}]\n"
        "    if hit:\n"
        "        print(name, hit[0])\n"
        "        break\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_every_audiotag_module_loads_no_prefect() -> None:
    code = (
        "import pkgutil, audiotag\n"
        "print('\\n'.join(['audiotag', *(m.name for m in pkgutil.walk_packages("
        "audiotag.__path__, 'audiotag.'))]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    names = out.stdout.split()
    # A folder without __init__.py is a namespace package, which walk_packages skips.
    assert sorted(set(names)) == sorted(n for n in project_modules(ROOT) if _top(n) == "audiotag")
    assert _loaded_by_imports(names, "prefect") == ""


def test_importing_audiotag_outside_tracking_loads_no_mlflow() -> None:
    # The names come from the files: pkgutil.walk_packages would import audiotag.tracking
    # itself to look inside it.
    names = [
        n for n in project_modules(ROOT) if _top(n) == "audiotag" and not _in_package(n, TRACKING)
    ]
    assert _loaded_by_imports(names, "mlflow") == ""


# The checker finds what it looks for.

FAKE = {
    "audiotag/__init__.py": "",
    "audiotag/a.py": "import prefect\n",
    "audiotag/b.py": "def f():\n    from prefect_dask import DaskTaskRunner\n",
    "audiotag/x.py": "from mlflow.tracking import MlflowClient\n",
    "audiotag/up.py": "def f():\n    from tasks import t\n",
    "audiotag/tracking/__init__.py": "",
    "audiotag/tracking/runs.py": "import mlflow\nfrom . import pyfunc\n",
    "audiotag/tracking/pyfunc.py": "import mlflow.pyfunc\nfrom ..r import nothing\n",
    # a circle through a relative import of a submodule and an absolute one
    "audiotag/p/__init__.py": "",
    "audiotag/p/q.py": "from .. import r\n",
    "audiotag/r.py": "from audiotag.p import q\n",
    # a circle through function-level imports, one of them of a package's __init__
    "audiotag/s/__init__.py": "from .t import T\n",
    "audiotag/s/t.py": "T = 1\n",
    "audiotag/u.py": "def f():\n    import audiotag.s.t\n",
    "audiotag/s/v.py": "def g():\n    from audiotag import u\n",
    "tasks/__init__.py": "",
    "tasks/t.py": "import mlflow\nfrom audiotag.tracking.runs import x\n",
    "tasks/w.py": "def f():\n    import flows.cli\n",
    "flows/__init__.py": "",
    "flows/cli.py": "def f():\n    import mlflow.pyfunc\n",
}


def test_the_checker_finds_every_kind_of_violation(tmp_path: Path) -> None:
    _write(tmp_path, FAKE)
    assert prefect_imports(tmp_path) == [
        "audiotag.a:1 imports prefect",
        "audiotag.b:2 imports prefect_dask (in a function)",
    ]
    assert sorted(mlflow_imports(tmp_path)) == [
        "audiotag.x:1 imports mlflow.tracking",
        "flows.cli:2 imports mlflow.pyfunc (in a function)",
        "tasks.t:1 imports mlflow",
    ]
    assert sorted(upward_imports(tmp_path)) == [
        "audiotag.up:2 imports tasks.t (in a function)",
        "tasks.w:2 imports flows.cli (in a function)",
    ]
    # u -> audiotag.s and audiotag.s.t, v -> u: no way back to u, no circle there.
    assert import_circles(tmp_path) == [["audiotag.p.q", "audiotag.r"]]


def test_relative_imports_resolve_against_the_importers_package(tmp_path: Path) -> None:
    _write(tmp_path, FAKE)
    found = {(i.importer, i.target) for i in imports(tmp_path)}
    assert ("audiotag.p.q", "audiotag.r") in found  # from .. import r: a submodule
    assert ("audiotag.tracking.runs", "audiotag.tracking.pyfunc") in found
    assert ("audiotag.tracking.pyfunc", "audiotag.r") in found  # from ..r import name
    assert ("audiotag.s", "audiotag.s.t") in found  # an __init__ is its own package
    assert ("audiotag.s.v", "audiotag.u") in found


def test_a_circle_through_function_level_imports_and_a_package_init_is_found(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            "audiotag/__init__.py": "",
            "audiotag/s/__init__.py": "from .v import V\n",
            "audiotag/s/v.py": "V = 1\ndef g():\n    from audiotag import u\n",
            # importing audiotag.s.t runs audiotag/s/__init__, which imports v, which imports u
            "audiotag/s/t.py": "",
            "audiotag/u.py": "def f():\n    import audiotag.s.t\n",
        },
    )
    assert import_circles(tmp_path) == [["audiotag.s", "audiotag.s.v", "audiotag.u"]]


def test_a_tree_that_keeps_the_rules_has_no_violation(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "audiotag/__init__.py": "",
            "audiotag/core.py": "import numpy\n",
            "audiotag/tracking/__init__.py": "",
            "audiotag/tracking/runs.py": "import mlflow\nfrom .. import core\n",
            "tasks/__init__.py": "",
            "tasks/t.py": "import prefect\nfrom audiotag.tracking import runs\n",
            "flows/__init__.py": "",
            "flows/f.py": "from prefect import flow\nfrom tasks.t import x\n",
        },
    )
    assert upward_imports(tmp_path) == []
    assert prefect_imports(tmp_path) == []
    assert mlflow_imports(tmp_path) == []
    assert import_circles(tmp_path) == []
