"""bnexp's internal import graph and its cycles, read from the source with `ast`.

Every `import bnexp.x` / `from bnexp.x import y` counts, including imports inside functions:
a function-local import hides a cycle from Python's import machinery, not from the design.

    python scripts/import_graph.py            # edges, cycles and the count of each
    python scripts/import_graph.py --cycles   # only the cycles (exit 1 if there are any)
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "bnexp"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(tree: ast.AST, here: str, is_package: bool, known: set[str]) -> set[str]:
    """The bnexp modules a file imports (a `from pkg import name` that names a submodule counts
    as importing that submodule)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = here.split(".") if is_package else here.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != PACKAGE:
                continue
            found.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    found.add(f"{base}.{alias.name}")
    return {m for m in found if m in known and m != here}


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the bnexp modules it imports, for every .py file under root/bnexp."""
    files = sorted((root / PACKAGE).rglob("*.py"))
    names = {module_name(f, root): f for f in files}
    graph = {}
    for name, path in names.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = imported_modules(tree, name, path.name == "__init__.py", set(names))
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; the components with more than one module are the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles, package __init__ re-exports aside: a package importing its own submodules (to
    re-export them) is not a cycle of the design unless a submodule imports the package back
    for something other than a submodule."""
    return [c for c in strongly_connected(graph) if len(c) > 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=Path(__file__).resolve().parents[1], type=Path)
    parser.add_argument("--cycles", action="store_true", help="print only the cycles")
    args = parser.parse_args(argv)
    graph = import_graph(args.root)
    cycles = import_cycles(graph)
    if not args.cycles:
        for module in sorted(graph):
            targets = ", ".join(sorted(graph[module])) or "-"
            print(f"{module:32s} -> {targets}")
        print()
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(cycles)} cycles")
    for cycle in cycles:
        print("  cycle: " + " <-> ".join(cycle))
    return 1 if (args.cycles and cycles) else 0


if __name__ == "__main__":
    raise SystemExit(main())
