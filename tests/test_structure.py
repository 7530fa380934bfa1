"""featx's import structure: no circle of imports among its modules, and nothing
outside ``featx/cli`` imports the CLI. Read with :mod:`ast`, nothing imported, so
the test is torch-free and takes well under a second.

The walk is the one of the project's review hook (``hooks/before-stop``), with
two differences: a package's ``__init__`` importing its own sub-modules counts
(``featx/cli/__init__.py`` runs ``featx.cli.report`` when it is imported, so an
import of ``featx.cli`` from below closes a real loop), and every circle is
listed, not the first one only.

Every import counts: those inside functions (they run later, but a circle
through them is still two modules that each need the other) and those under
``if TYPE_CHECKING:`` (a type hint that points back up a floor is the same
design fault, and featx has none to excuse).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.structure import (
    FLOORS,
    PACKAGE,
    ROOT,
    circles,
    import_graph,
    imported_names,
    modules,
    stage_graph,
)

#: The packages whose every module says its public names in ``__all__``: all.
WITH_ALL = (
    "featx.cache",
    "featx.cli",
    "featx.compute",
    "featx.extraction",
    "featx.fit",
    "featx.images",
    "featx.model",
    "featx.predict",
    "featx.report",
    "featx.serve",
)
#: Modules that need no ``__all__``: the alias table and ``python -m featx``.
WITHOUT_ALL = ("featx._moved", "featx.__main__")


def describe(component: list[str], graph: dict[str, dict[str, int]]) -> str:
    """One circle's modules and the imports that join them, with their lines."""
    members = set(component)
    edges = [
        f"{m} -> {t} (line {line})"
        for m in component
        for t, line in sorted(graph[m].items())
        if t in members
    ]
    return f"{len(component)} modules: " + "; ".join(edges)


def test_the_walk_sees_a_circle_and_a_function_level_import(tmp_path: Path):
    """The helpers themselves: a two-module circle closed by an import inside a
    function is found, and a chain without a way back is not."""
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b": 1}, "b": {"c": 2}, "c": {}}) == []
    (tmp_path / "m.py").write_text("def f():\n    from . import n\n")
    assert imported_names("pkg.m", tmp_path / "m.py") == [("pkg", 2), ("pkg.n", 2)]


def test_featx_has_no_import_circle():
    graph = import_graph()
    assert "featx.cli" in graph and "featx.cache.read" in graph  # the walk saw them
    found = [describe(c, graph) for c in circles(graph)]
    assert found == [], "import circles:\n" + "\n".join(found)


def test_only_featx_cli_and_main_import_the_cli():
    offenders = [
        f"{name} (line {line})"
        for name, path in modules().items()
        if not (name == "featx.cli" or name.startswith("featx.cli."))
        and name != "featx.__main__"
        for target, line in imported_names(name, path)
        if target.split(".")[:2] == ["featx", "cli"]
    ]
    assert sorted(set(offenders)) == []


def declared_all(path: Path) -> list[str] | None:
    """The names of the module's ``__all__`` (a literal list), or None."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return None


def top_level_names(path: Path) -> set[str]:
    """The names a module binds at its top level (definitions and imports)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            targets = {t.id for t in node.targets if isinstance(t, ast.Name)}
            names |= targets
            if "_LAZY" in targets:  # names a module-level __getattr__ loads
                names |= set(ast.literal_eval(node.value))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


@pytest.mark.parametrize("package", WITH_ALL)
def test_each_module_lists_its_public_names(package: str):
    """Every module of ``package`` has an ``__all__``, each of its names exists
    there, and each public name another module or a test imports from it is
    in it."""
    mods = modules()
    mine = {m: p for m, p in mods.items() if (m + ".").startswith(package + ".")}
    missing = [m for m, p in mine.items() if declared_all(p) is None]
    assert missing == [], "no __all__ in " + ", ".join(missing)
    undefined = [
        f"{m}.{name}"
        for m, p in mine.items()
        for name in declared_all(p)
        if name not in top_level_names(p)
    ]
    assert undefined == []
    importers = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    unlisted = []
    for path in importers:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.module not in mine:
                continue
            public = declared_all(mine[node.module])
            unlisted += [
                f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                for a in node.names
                if not a.name.startswith("_")
                and f"{node.module}.{a.name}" not in mods
                and a.name not in public
            ]
    assert unlisted == []


def test_the_top_level_modules_list_their_public_names_too():
    top = [
        name
        for name in modules()
        if name.count(".") == 1
        and name not in WITHOUT_ALL
        and not any(name == p or name.startswith(p + ".") for p in WITH_ALL)
    ]
    missing = [m for m in top if declared_all(modules()[m]) is None]
    assert top and missing == []


def stage(name: str) -> str:
    """The stage package a module belongs to (``featx.cache.read`` ->
    ``featx.cache``); a top-level module is its own."""
    return ".".join(name.split(".")[:2])


def test_no_private_name_is_imported_from_another_package():
    """A ``_helper`` is its package's own: another package that needs it gets a
    public name (or the helper moves)."""
    mods = modules()
    offenders = [
        f"{name}:{node.lineno} {node.module}.{alias.name}"
        for name, path in mods.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("featx")
        and stage(node.module) != stage(name)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert offenders == []


def test_no_module_is_left_loose_beside_the_stage_packages():
    """The top of ``featx/`` holds the stage packages and the floor they all
    stand on (errors, choices, digests, progress, the record base, the
    torch-free model-name table), the end-to-end demo, and the alias table of
    old paths."""
    loose = sorted(
        p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")
    )
    assert loose == [
        "_moved",
        "choices",
        "demo",
        "digest",
        "errors",
        "model_names",
        "progress",
        "records",
    ]


def test_every_stage_imports_only_the_floors_below_it():
    """The alias table (featx._moved) resolves old names lazily, by name: it
    imports no module of featx itself."""
    graph = stage_graph()
    assert set(graph) | {t for ts in graph.values() for t in ts} <= set(FLOORS)
    upward = [
        f"{a} -> {b} ({where})"
        for a, targets in graph.items()
        for b, where in targets.items()
        if FLOORS.index(b) > FLOORS.index(a)
    ]
    assert upward == []
