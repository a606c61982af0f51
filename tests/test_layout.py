"""The package layout: imports run one way between the project's packages, `core` imports none of them, no two
modules import each other (even through others, even inside a package), and no module takes another package's
private name."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(
    p.name for p in REPO.iterdir() if (p / "__init__.py").is_file() and p.name not in ("tests", "benchmarks")
)


def package_imports() -> dict[str, set[str]]:
    """Which of the project's packages each package imports, read from the code (function-local imports too)."""
    graph = {p: set() for p in PACKAGES}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module]
                    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                    else []
                )
                graph[package] |= {n.split(".")[0] for n in names} & set(PACKAGES) - {package}
    return graph


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def project_files() -> list[Path]:
    tops = [REPO / p for p in PACKAGES] + [REPO / "conceptcaps.py", REPO / "pipeline.py"]
    return sorted(f for t in tops for f in ([t] if t.suffix == ".py" else t.rglob("*.py")))


def imported_names(path: Path):
    """(module, name or None) for every absolute import of a file, function-local ones too."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((a.name, None) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield from ((node.module, a.name) for a in node.names)


def module_imports() -> dict[str, set[str]]:
    """Which of the project's modules each module imports (`from pkg import module` counts as the module)."""
    files = project_files()
    modules = {module_name(f) for f in files}
    graph = {module_name(f): set() for f in files}
    for f in files:
        for module, name in imported_names(f):
            target = f"{module}.{name}" if f"{module}.{name}" in modules else module
            if target in modules and target != module_name(f):
                graph[module_name(f)].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of packages as a path (first == last), or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
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


def test_no_import_cycle_between_modules():
    """core.config and core.lock imported each other through function-local imports; no module may."""
    graph = module_imports()
    assert {"core.config", "core.lock", "builder.reader", "probing.tcav_engine"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, f"modules import each other: {' -> '.join(cycle)}"


def test_the_module_graph_sees_function_local_imports(tmp_path):
    graph = module_imports()
    assert "core.log" in graph["core.lock"]  # a function-local import
    assert find_cycle({**graph, "core.log": graph["core.log"] | {"core.lock"}}) is not None


def test_probing_needs_nothing_from_evaluation_and_nobody_takes_a_private_name():
    graph = package_imports()
    assert "evaluation" not in graph["probing"], graph["probing"]
    private = [
        (module_name(f), module, name)
        for f in project_files()
        for module, name in imported_names(f)
        if name
        and name.startswith("_")
        and module.split(".")[0] in PACKAGES
        and module.split(".")[0] != module_name(f).split(".")[0]
    ]
    assert not private, private
