"""The package layout: imports run one way between the project's packages, and `core` imports none of them."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.name for p in REPO.iterdir() if (p / "__init__.py").is_file() and p.name not in ("tests", "benchmarks"))


def package_imports() -> dict[str, set[str]]:
    """Which of the project's packages each package imports, read from the code (function-local imports too)."""
    graph = {p: set() for p in PACKAGES}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
                graph[package] |= {n.split(".")[0] for n in names} & set(PACKAGES) - {package}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of packages as a path (first == last), or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_import_cycle_between_packages():
    graph = package_imports()
    assert set(PACKAGES) >= {"core", "builder", "training", "generation", "evaluation", "card", "fixtures", "review"}
    assert find_cycle(graph) is None, f"packages import each other: {' -> '.join(find_cycle(graph))}"
    assert graph["core"] == set(), f"core must import no other package, imports {graph['core']}"
    assert not graph["builder"] & {"evaluation", "card", "generation", "training"}, graph["builder"]
    # the researcher's tools sit on top: no package of the generator imports them (the review app shows the judge)
    tools = {"probing", "review"}
    assert not [p for p in graph if p not in tools and graph[p] & tools], {p: graph[p] & tools for p in graph}
    assert "review" not in graph["probing"], graph["probing"]


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
