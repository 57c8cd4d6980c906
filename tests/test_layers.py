"""The package's imports only point down: tasks and models -> backends -> sampling and search -> estimators, results
-> config -> stages -> the runner. Any import cycle fails here, and so does an import from a higher layer."""
import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ttc_utils"

# the lowest layer first; a module may import only from its own layer or lower ones
LAYERS = [
    {"checks", "flops", "world", "tokenizer", "aggregation", "batching", "model_spec", "cache", "difficulty",
     "estimators", "plots", "policy", "verifier", "tasks.base", "workers"},
    {"tasks", "tasks.arithmetic", "tasks.math", "models", "head_padding", "kv_cache"},
    {"transformers_policy", "vllm_policy", "token_verifier", "value_head", "open_prm", "registry", "training"},
    {"sampling", "labels", "verifier_training", "scoring", "search", "evaluation", "verifier_quality", "revisions",
     "revision_training", "chains"},
    {"results", "findings", "compute_optimal"},
    {"validity"},
    {"config"},
    {"stages", "stages.common", "stages.world", "stages.pool", "stages.prm_search", "stages.revisions",
     "stages.compute_optimal", "stages.flops_matched"},
    {"run", "figure_diff"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        here = m.split(".") if path.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                    mod = ".".join(base + (node.module.split(".") if node.module else []))
                elif (node.module or "").startswith("ttc_utils"):
                    mod = node.module.removeprefix("ttc_utils").lstrip(".")
                else:
                    continue
                for target in [mod] + [f"{mod}.{a.name}" if mod else a.name for a in node.names]:
                    if target in mods and target != m:
                        graph[m].add(target)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    target = a.name.removeprefix("ttc_utils").lstrip(".")
                    if a.name.startswith("ttc_utils") and target in mods and target != m:
                        graph[m].add(target)
    return graph


def find_cycle(graph):
    state, stack = {}, []

    def visit(v):
        state[v] = "open"
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = "done"
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_every_module_imports():
    for name in internal_imports():
        importlib.import_module(f"ttc_utils.{name}" if name else "ttc_utils")


def test_no_import_cycle():
    assert find_cycle(internal_imports()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_every_module_has_a_layer():
    known = set().union(*LAYERS)
    assert set(internal_imports()) - {""} <= known, sorted(set(internal_imports()) - known - {""})


@pytest.mark.parametrize("module", sorted(set().union(*LAYERS)))
def test_imports_point_down(module):
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    graph = internal_imports()
    if module not in graph:
        pytest.skip(f"{module} does not exist")
    upward = sorted(t for t in graph[module] if rank.get(t, -1) > rank[module])
    assert not upward, f"{module} imports {upward} from a higher layer"


def test_config_imports_no_stage():
    assert not {t for t in internal_imports()["config"] if t.startswith("stages")}
