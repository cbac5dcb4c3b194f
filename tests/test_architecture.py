"""The tree holds its architecture (docs/engine.md, "Modules"): dependencies point one way
(``services -> contracts -> libshm``), nothing outside libshm imports its modules rather than
its public surface, no service imports another service or ``services/tools``,
no import cycle (typing-only and lazy imports included), and no module grows past about 500
lines without saying why at its top (a ``Size:`` paragraph in its docstring)."""

from __future__ import annotations

import ast
from pathlib import Path

import libshm
from tests.helpers import ROOT

PACKAGES = ("libshm", "contracts", "services", "strategies")
SERVICES = ("engine", "md_recorder", "monitor")
MAX_LINES = 550  # "about 500"


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports anywhere in it (top level, in functions, under
    ``if TYPE_CHECKING``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {f for f in found if f in known and f != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, name, known) for name, path in known.items()}


def test_the_scan_sees_the_imports_it_must() -> None:
    g = graph()
    assert "services.engine.core" in g["services.engine.live"]
    assert "services.engine.orders" in g["services.engine.adapter"]  # a typing-only import
    assert "services.engine.live" in g["services.cli"]  # a lazy import in a function


def test_dependencies_point_one_way() -> None:
    wrong = []
    for name, deps in graph().items():
        top = name.split(".")[0]
        for dep in deps:
            dtop = dep.split(".")[0]
            if top == "libshm" and dtop != "libshm":
                wrong.append(f"{name} -> {dep}")
            if top == "contracts" and dtop not in ("contracts", "libshm"):
                wrong.append(f"{name} -> {dep}")
            parts, dparts = name.split("."), dep.split(".")
            in_service = top == "services" and len(parts) > 1 and parts[1] in SERVICES
            if in_service and len(dparts) > 1 and dparts[0] == "services" and dparts[1] != parts[1]:
                wrong.append(f"{name} -> {dep}")  # another service, or services/tools
            public = dep == "libshm" or dparts[-1] in libshm.__all__  # libshm.accel
            if top != "libshm" and dtop == "libshm" and not public:
                wrong.append(f"{name} -> {dep} (import from libshm, its public surface)")
    assert wrong == []


def test_no_import_cycle() -> None:
    g = graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(g[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node)
    assert cycles == []


def test_a_long_module_says_why_at_its_top() -> None:
    unexplained = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_LINES and "\nSize:" not in doc:
            unexplained.append(f"{name} ({lines} lines)")
    assert unexplained == []
