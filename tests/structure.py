"""featx's import structure, read with :mod:`ast` (nothing is imported, no
pytest): the walk of imports, its circles, and the stages' floors. Used by
``tests/test_structure.py`` and by the docs' architecture page
(``docs/hooks.py``), so both read the same structure."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "featx"


def module_name(path: Path) -> str:
    """``featx/cache/read.py`` -> ``featx.cache.read``; a package's ``__init__.py``
    is the package itself."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of featx, by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names(name: str, path: Path) -> list[tuple[str, int]]:
    """The dotted names ``path`` imports anywhere in its body, with their lines:
    for ``from a.b import c``, both ``a.b`` and ``a.b.c`` (``c`` may be a module);
    relative imports resolved against the module's package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """Each featx module -> the featx modules it imports, with the first line that
    does. A name that is not a module (``featx.cache.read.read_rows``) counts as
    the module that holds it. A module's own packages are left out: Python runs
    them before the module, whether it names them or not."""
    mods = modules()
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for name, path in mods.items():
        for target, line in imported_names(name, path):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                graph[name].setdefault(target, line)
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's
    algorithm, iterative): each is one or more circles of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


#: featx's floors, bottom up (docs/architecture.md): a stage imports only the
#: stages below it. ``floor`` is what every stage stands on (errors, choices,
#: records, ...); ``featx`` is the package's own ``__init__`` (lazy names).
FLOORS = (
    "floor",
    "featx",
    "images",
    "model",
    "cache",
    "compute",
    "extraction",
    "predict",
    "fit",
    "report",
    "serve",
    "demo",
    "cli",
    "__main__",
)
FLOOR_MODULES = ("errors", "choices", "records", "digest", "progress", "model_names")


def stage_of(module: str) -> str:
    """The stage of a featx module: ``featx.fit.cv`` -> ``fit``; the floor
    modules -> ``floor``; ``featx`` itself -> ``featx``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "featx"
    if parts[1] in FLOOR_MODULES or parts[1] == "_moved":
        return "floor"
    return parts[1]


def stage_graph() -> dict[str, dict[str, str]]:
    """Each stage -> the stages it imports, each with one import that does
    (``module:line``)."""
    graph: dict[str, dict[str, str]] = {}
    for name, targets in import_graph().items():
        for target, line in targets.items():
            a, b = stage_of(name), stage_of(target)
            if a != b:
                graph.setdefault(a, {}).setdefault(b, f"{name}:{line}")
    return graph
