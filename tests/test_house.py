"""The house rules of docs/ARCHITECTURE.md, held by a test: imports point one way between the planner's layers, no
import cycle between modules, planner/ never imports torch/transformers/accelerate/vLLM (not even lazily), and no
module grows past 450 lines (a file that big holds more than one job)."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 450
# A layer may import its own layer and those with a lower rank (docs/ARCHITECTURE.md, "The flow").
RANK = {"errors": 0, "version": 0, "units": 1, "files": 1, "hardware": 2, "plan": 2, "source": 2, "model": 3,
        "memory": 4, "search": 5, "report": 6, "slurm": 6, "api": 7, "planner": 7, "cli": 8}
HEAVY = {"torch", "transformers", "accelerate", "vllm", "bitsandbytes", "safetensors"}


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for f in sorted((REPO / package).rglob("*.py")):
        parts = f.relative_to(REPO).with_suffix("").parts
        name = ".".join(("vplan",) + (parts[:-1] if parts[-1] == "__init__" else parts))
        out[name] = f
    return out


def _imports(path: Path, name: str, is_package: bool) -> set[str]:
    """Every module ``path`` imports (module level and inside functions), relative imports resolved."""
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = name.split(".")
                base = base[:len(base) - n.level + (1 if is_package else 0)]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in n.names}  # `from pkg import module`
    return out


PLANNER = _modules("planner")
RUNTIME = _modules("runtime")


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    known = set(PLANNER) | set(RUNTIME)
    return {m: {i for i in _imports(p, m, p.name == "__init__.py") if i in known and i != m} for m, p in mods.items()}


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[2] if len(parts) > 2 else "planner"


def test_the_tree_is_what_the_architecture_says():
    assert {_layer(m) for m in PLANNER} == set(RANK), "a new planner layer needs its rank here and in ARCHITECTURE.md"


def test_planner_layers_import_one_way():
    wrong = [f"{a} -> {b}" for a, bs in _graph(PLANNER).items() for b in bs
             if b.startswith("vplan.planner") and RANK[_layer(b)] > RANK[_layer(a)]]
    assert not wrong, "imports against the flow: " + ", ".join(sorted(wrong))


def test_planner_never_imports_the_runtime_or_heavy_packages():
    bad = []
    for m, p in PLANNER.items():
        for i in _imports(p, m, p.name == "__init__.py"):
            if i.split(".")[0] in HEAVY or i.startswith("vplan.runtime"):
                bad.append(f"{m} imports {i}")
    assert not bad, bad


def test_no_import_cycles():
    graph = {**_graph(PLANNER), **_graph(RUNTIME)}
    # a package's __init__ re-exporting its own modules is not a cycle: drop edges from a package to its children
    graph = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in graph.items()}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("package", ["planner", "runtime"])
def test_no_module_past_the_limit(package):
    big = {str(p.relative_to(REPO)): n for p in (REPO / package).rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by job): {big}"
