"""The layout's rules, checked on the source: no import cycle, no library importing a program.

The split follows Postfix's between ``src/global`` (libraries) and its daemons
(programs): a program is a process's main loop and its I/O, everything else is a
library that programs use. Every module's imports are read with ``ast`` (module-level,
inside functions, under ``TYPE_CHECKING``): an edge goes from the importing module to
the most specific ``postier`` module named, so ``from postier.x import y`` where ``y``
is a submodule is an import of ``postier.x.y``. The checker's functions are tested on
small synthetic graphs below, so that a violation cannot slip through unseen.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import postier

SRC = Path(postier.__file__).resolve().parent
ROOT = "postier"

# The declared map: these packages are programs; every other module is a library
# (daemon.py and log.py included).
PROGRAMS = frozenset({"master", "smtpd", "qmgr", "local", "cli", "metricsd", "anvil",
                      "pickup"})


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line`` of ``source``'s file."""

    source: str
    target: str
    line: int


def module_names(src: Path, root: str = ROOT) -> dict[str, Path]:
    """Every module under the package directory ``src``: dotted name -> file."""
    names: dict[str, Path] = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join([root, *parts])] = path
    return names


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of a ``from`` import's base (handles relative imports)."""
    if level == 0:
        return name or ""
    parts = module.split(".")
    if not is_package:
        parts.pop()
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, name] if name else parts)


def _known(name: str, known: Iterable[str]) -> str | None:
    """The longest known module that ``name`` is or lies inside, or None (not ours)."""
    best: str | None = None
    for candidate in known:
        if (name == candidate or name.startswith(candidate + ".")) and (
            best is None or len(candidate) > len(best)
        ):
            best = candidate
    return best


def imports_of(
    module: str, source: str, known: set[str], *, is_package: bool = False
) -> list[Edge]:
    """Every import of a module in ``known`` made anywhere in ``source`` (the text of
    ``module``), as edges; imports of modules outside ``known`` are left out."""
    edges: list[Edge] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            found = _known(target, known)
            if found is not None and found != module:
                edges.append(Edge(module, found, node.lineno))
    return edges


def import_graph(src: Path, root: str = ROOT) -> list[Edge]:
    """The import edges between the modules of the package directory ``src``."""
    names = module_names(src, root)
    known = set(names)
    edges: list[Edge] = []
    for name, path in names.items():
        edges += imports_of(
            name, path.read_text(), known, is_package=path.name == "__init__.py"
        )
    return edges


def find_cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """One cycle path per strongly connected group of modules, e.g. ``[a, b, a]``.

    Tarjan's algorithm finds the groups; within each, a breadth-first search from its
    first module (in sorted order) finds the shortest way back to it.
    """
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph[v]:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)

    return sorted(_shortest_cycle(min(group), graph, group) for group in groups)


def _shortest_cycle(start: str, graph: Mapping[str, set[str]], group: set[str]) -> list[str]:
    """The shortest import path from ``start`` back to itself inside ``group``."""
    if start in graph[start]:
        return [start, start]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{start} is in a strongly connected group but on no cycle")


def is_program(module: str, programs: frozenset[str] = PROGRAMS, root: str = ROOT) -> bool:
    """Whether ``module`` belongs to one of the program packages."""
    parts = module.split(".")
    return len(parts) > 1 and parts[0] == root and parts[1] in programs


def program_of(module: str) -> str | None:
    """The program package ``module`` belongs to, or None for a library module."""
    return module.split(".")[1] if is_program(module) else None


def library_to_program(
    edges: Iterable[Edge], programs: frozenset[str] = PROGRAMS, root: str = ROOT
) -> list[Edge]:
    """The edges from a library module to a program module."""
    return [
        e
        for e in edges
        if not is_program(e.source, programs, root) and is_program(e.target, programs, root)
    ]


def program_to_program(
    edges: Iterable[Edge], programs: frozenset[str] = PROGRAMS, root: str = ROOT
) -> list[Edge]:
    """The edges from one program package to another (programs share only libraries)."""
    return [
        e
        for e in edges
        if is_program(e.source, programs, root)
        and is_program(e.target, programs, root)
        and e.source.split(".")[1] != e.target.split(".")[1]
    ]


def _where(edge: Edge, files: Mapping[str, Path]) -> str:
    path = files.get(edge.source)
    place = f"{path.relative_to(SRC.parent)}:{edge.line}" if path else f"line {edge.line}"
    return f"{edge.source} imports {edge.target} ({place})"


# --- the rules, on postier's source ------------------------------------------------------


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return import_graph(SRC)


def test_no_import_cycle(edges: list[Edge]) -> None:
    cycles = find_cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_library_imports_a_program(edges: list[Edge]) -> None:
    files = module_names(SRC)
    bad = library_to_program(edges)
    assert not bad, "a library imports a program:\n" + "\n".join(_where(e, files) for e in bad)


def test_no_program_imports_another(edges: list[Edge]) -> None:
    files = module_names(SRC)
    bad = program_to_program(edges)
    assert not bad, "a program imports another program:\n" + "\n".join(
        _where(e, files) for e in bad
    )


def test_the_map_names_existing_packages() -> None:
    packages = {p.parent.name for p in SRC.glob("*/__init__.py")}
    assert packages >= PROGRAMS, f"programs declared but absent: {sorted(PROGRAMS - packages)}"


def test_every_package_says_program_or_library() -> None:
    wrong: list[str] = []
    for init in sorted(SRC.rglob("__init__.py")):
        if init.parent == SRC:
            continue  # the distribution itself
        package = ".".join([ROOT, *init.parent.relative_to(SRC).parts])
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        first = doc.split("\n\n", 1)[0]
        expected = "(program" if is_program(package) else "(library"
        if expected not in first:
            wrong.append(f"{package}: its docstring's first paragraph lacks {expected!r}")
    assert not wrong, "\n".join(wrong)


# --- the checker itself, on synthetic graphs ---------------------------------------------

_KNOWN = {
    "postier",
    "postier.a",
    "postier.a.one",
    "postier.a.two",
    "postier.b",
    "postier.b.three",
    "postier.log",
}


def _targets(source: str, module: str = "postier.a.one", *, is_package: bool = False) -> list[str]:
    return [e.target for e in imports_of(module, source, _KNOWN, is_package=is_package)]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import postier.b.three", ["postier.b.three"]),
        ("from postier.b import three", ["postier.b.three"]),
        ("from postier.b.three import Thing", ["postier.b.three"]),
        ("from postier import log", ["postier.log"]),
        ("from postier import __version__", ["postier"]),
        ("from postier.b import not_a_module", ["postier.b"]),
        ("from . import two", ["postier.a.two"]),
        ("from .two import x", ["postier.a.two"]),
        ("from ..b import three", ["postier.b.three"]),
        ("from .. import log", ["postier.log"]),
        ("import os\nfrom collections import abc\nimport postierx", []),
        ("def f():\n    from postier.b import three\n", ["postier.b.three"]),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from postier import log\n",
            ["postier.log"],
        ),
        ("class C:\n    def m(self):\n        import postier.log\n", ["postier.log"]),
        ("import postier.a.one", []),  # a module naming itself is no edge
    ],
)
def test_imports_are_read_everywhere(source: str, expected: list[str]) -> None:
    assert _targets(source) == expected


def test_relative_import_inside_a_package_init() -> None:
    assert _targets("from . import one", "postier.a", is_package=True) == ["postier.a.one"]
    assert _targets("from .b import three", "postier", is_package=True) == ["postier.b.three"]


def test_import_lines_are_reported() -> None:
    edges = imports_of("postier.a.one", "import os\n\nfrom postier import log\n", _KNOWN)
    assert edges == [Edge("postier.a.one", "postier.log", 3)]


def _edges(*pairs: tuple[str, str]) -> list[Edge]:
    return [Edge(a, b, 1) for a, b in pairs]


def test_no_cycle_in_a_tree_or_a_diamond() -> None:
    assert find_cycles(_edges(("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"))) == []


def test_a_two_module_cycle_is_found_with_its_path() -> None:
    cycles = find_cycles(_edges(("x", "session"), ("session", "policy"), ("policy", "session")))
    assert cycles == [["policy", "session", "policy"]]


def test_a_long_cycle_is_reported_in_import_order() -> None:
    graph = _edges(("m1", "m2"), ("m2", "m3"), ("m3", "m4"), ("m4", "m1"), ("m3", "z"))
    cycles = find_cycles(graph)
    assert cycles == [["m1", "m2", "m3", "m4", "m1"]]


def test_the_shortest_way_round_is_reported() -> None:
    graph = _edges(("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("b", "a"))
    assert find_cycles(graph) == [["a", "b", "a"]]


def test_a_self_import_is_a_cycle() -> None:
    assert find_cycles(_edges(("a", "a"), ("a", "b"))) == [["a", "a"]]


def test_separate_cycles_are_each_reported() -> None:
    graph = _edges(("a", "b"), ("b", "a"), ("c", "d"), ("d", "e"), ("e", "c"), ("a", "c"))
    assert find_cycles(graph) == [["a", "b", "a"], ["c", "d", "e", "c"]]


def test_a_cycle_across_real_files_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "smtpd").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "smtpd" / "__init__.py").write_text("")
    (pkg / "smtpd" / "session.py").write_text("from pkg.smtpd import policy\n")
    (pkg / "smtpd" / "policy.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.smtpd.session import S\n"
    )
    cycles = find_cycles(import_graph(pkg, "pkg"))
    assert cycles == [["pkg.smtpd.policy", "pkg.smtpd.session", "pkg.smtpd.policy"]]


def test_a_library_importing_a_program_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    for sub in ("smtpd", "queue"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "smtpd" / "worker.py").write_text("from pkg.queue import file\n")
    (pkg / "queue" / "file.py").write_text(
        "import os\n\ndef f():\n    from pkg.smtpd import worker\n"
    )
    (pkg / "log.py").write_text("import pkg.smtpd\n")
    bad = library_to_program(import_graph(pkg, "pkg"), frozenset({"smtpd"}), "pkg")
    assert sorted(bad, key=lambda e: e.source) == [
        Edge("pkg.log", "pkg.smtpd", 1),
        Edge("pkg.queue.file", "pkg.smtpd.worker", 4),
    ]


def test_programs_may_import_libraries_and_themselves_but_not_each_other() -> None:
    edges = [
        Edge("postier.smtpd.worker", "postier.smtpd.session", 1),
        Edge("postier.smtpd.worker", "postier.queue.file", 2),
        Edge("postier.cli.main", "postier.master.master", 3),
        Edge("postier.queue.file", "postier.log", 4),
    ]
    assert library_to_program(edges) == []
    assert program_to_program(edges) == [Edge("postier.cli.main", "postier.master.master", 3)]


@pytest.mark.parametrize(
    ("module", "program"),
    [
        ("postier.master.master", "master"),
        ("postier.smtpd", "smtpd"),
        ("postier.cli.main", "cli"),
        ("postier.daemon", None),
        ("postier.log", None),
        ("postier.queue.file", None),
        ("postier", None),
        ("postier.localpart", None),  # a name that starts like a program's is not one
    ],
)
def test_the_declared_map(module: str, program: str | None) -> None:
    assert program_of(module) == program


def _loaded(statement: str, prefix: str) -> list[str]:
    """The ``postier`` modules whose name starts with ``prefix`` that a fresh interpreter
    has loaded after ``statement``."""
    code = (
        f"import sys\n{statement}\n"
        f"print('\\n'.join(sorted(m for m in sys.modules if m.startswith({prefix!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return out.split()


def test_the_master_process_loads_no_other_program() -> None:
    loaded = _loaded("import postier.master.master", "postier.")
    assert [m for m in loaded if program_of(m) not in (None, "master")] == []
    assert "postier.master.master" in loaded


def test_the_command_line_loads_no_master_code() -> None:
    loaded = _loaded("import postier.cli.main, postier.cli.control", "postier.")
    assert [m for m in loaded if program_of(m) not in (None, "cli")] == []
    assert "postier.cli.control" in loaded
