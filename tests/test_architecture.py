"""The package's shape: no import cycle between its modules (imports inside functions included), imports
that point down the layers of docs/architecture.md, no function over 80 lines, no module over 400 lines and
no public function with more than 12 parameters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "compound_fer"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module that ``name`` (a module or a name inside one) refers to."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports, anywhere in its body (``import_module("...")`` literals too)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                targets = [f"{base}.{a.name}" for a in node.names]
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                targets = [node.args[0].value]
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith("compound_fer.")
            ):
                targets = [node.value]  # module names in tables handed to import_module
            for t in targets:
                if not t.startswith("compound_fer"):
                    continue
                dep = _resolve(t, modules)
                if dep and dep != mod and not mod.startswith(dep + "."):  # a module's own package is its parent
                    graph[mod].add(dep)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_walker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_package_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES:
                out.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({n} lines)")
    return out


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_and_function_sizes(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines (limit {MAX_MODULE_LINES})"
    assert not _long_functions(path), _long_functions(path)


#: the package's layers, lowest first: a module imports only modules of its own layer or of layers below it
#: (docs/architecture.md draws them). A name matches its module and everything under it; the longest wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("compound_fer.errors", "compound_fer.taxonomy", "compound_fer.io",
              "compound_fer.seeding", "compound_fer.threads", "compound_fer.memory", "compound_fer.labels",
              "compound_fer.config", "compound_fer.backbones", "compound_fer.overrides", "compound_fer.run_lock")),
    ("data", ("compound_fer.data",)),
    ("models", ("compound_fer.pretrained", "compound_fer.fusion", "compound_fer.models", "compound_fer.model_io",
                "compound_fer.features", "compound_fer.inputs", "compound_fer.scenarios", "compound_fer.checkpoint",
                "compound_fer.fingerprint", "compound_fer.prediction.faces", "compound_fer.prediction.recipe",
                "compound_fer.prediction.inputs", "compound_fer.prediction.labelled")),
    ("evaluation", ("compound_fer.evaluation",)),
    ("training primitives", ("compound_fer.training.predict", "compound_fer.training.optim",
                             "compound_fer.training.heads", "compound_fer.distributed")),
    ("training", ("compound_fer.training",)),
    ("runner", ("compound_fer.runner",)),
    ("explain", ("compound_fer.explain",)),
    ("prediction", ("compound_fer.prediction",)),
    # the package's own __init__ is the facade (lazy exports of the API), beside the command line
    ("cli", ("compound_fer", "compound_fer.cli", "compound_fer.commands", "compound_fer.__main__")),
]
MAX_PUBLIC_PARAMETERS = 12


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix naming ``module``."""
    best, depth = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:  # the package itself names only its __init__
            if (module == p or (p != "compound_fer" and module.startswith(p + "."))) and p.count(".") > depth:
                best, depth = i, p.count(".")
    return best


def test_every_module_has_a_layer():
    assert [m for m in _modules() if layer_of(m) < 0] == []


def test_imports_point_down_the_layers():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
              for m, deps in import_graph().items() for d in sorted(deps) if layer_of(d) > layer_of(m)]
    assert upward == [], "imports against the layer order:\n" + "\n".join(upward)


def test_the_layer_check_sees_an_upward_import():
    assert layer_of("compound_fer.training.strategies") > layer_of("compound_fer.training.predict")
    assert layer_of("compound_fer.config") < layer_of("compound_fer.training.registry")


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = node.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    return [n for n in names if n not in ("self", "cls")]


def _public_callables(tree: ast.AST) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Public functions and methods, and the ``__init__`` of every public class (its constructor; the fields of
    a dataclass or pydantic model are not parameters of a written ``__init__`` and do not count)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            out.append((node.name, node))
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            out += [(f"{node.name}.__init__", f) for f in node.body
                    if isinstance(f, ast.FunctionDef) and f.name == "__init__"]
    return out


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_public_callable_takes_more_than_12_parameters(path):
    long = [f"{name} ({len(_parameters(node))} parameters)"
            for name, node in _public_callables(ast.parse(path.read_text(encoding="utf-8")))
            if len(_parameters(node)) > MAX_PUBLIC_PARAMETERS]
    assert not long, f"{path.name}: {long}: group them into a typed option object"


def test_the_parameter_rule_sees_constructors():
    tree = ast.parse("class A:\n    def __init__(self, *, " + ", ".join(f"a{i}=0" for i in range(13)) + "): pass\n")
    assert [name for name, node in _public_callables(tree) if len(_parameters(node)) > 12] == ["A.__init__"]


def _strings(path: Path) -> list[str]:
    """Every string constant of a module (f-string parts included)."""
    return [n.value for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)]


#: words of the data checks' messages: raised in runner/checks.py only (its callers import the checks)
DATA_CHECK_WORDS = ("is the training folder", "is the --data folder", "the test split is empty",
                    "split has no image of the basic classes", "data.test_path needs evaluation.mode")


def test_data_checks_live_in_runner_checks():
    """The data checks (test folder apart from the training folder, the classes it must hold, empty splits)
    are defined in runner/checks.py and nowhere else; the plan, the protocol and the basic phase call them."""
    home = PACKAGE / "runner" / "checks.py"
    elsewhere = [f"{p.relative_to(PACKAGE)}: {w!r}" for p in sorted(PACKAGE.rglob("*.py")) if p != home
                 for w in DATA_CHECK_WORDS if any(w in s for s in _strings(p))]
    assert elsewhere == [], "data checks outside runner/checks.py:\n" + "\n".join(elsewhere)
    assert all(any(w in s for s in _strings(home)) for w in DATA_CHECK_WORDS if "--" not in w)
    defined = [f"{p.relative_to(PACKAGE)}: {n.name}" for p in sorted(PACKAGE.rglob("*.py")) if p != home
               for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
               if isinstance(n, ast.FunctionDef) and n.name in ("check_paths", "check_test_classes", "check_splits")]
    assert defined == []
    graph = import_graph()
    for caller in ("compound_fer.runner.plan", "compound_fer.runner.protocol", "compound_fer.runner.basic"):
        assert "compound_fer.runner.checks" in graph[caller], caller


def test_one_recursive_merge():
    """Config overrides, run arguments and benchmark variants merge with ``compound_fer.overrides.deep_merge``."""
    roots = [PACKAGE, PACKAGE.parent / "benchmarks"]
    merges = []
    for p in (f for r in roots for f in sorted(r.rglob("*.py"))):
        for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(n, ast.FunctionDef) and "merge" in n.name.lower() and any(
                    isinstance(c, ast.Call) and getattr(c.func, "id", None) == n.name for c in ast.walk(n)):
                merges.append(f"{p.relative_to(PACKAGE.parent)}: {n.name}")
    assert merges == ["compound_fer/overrides.py: deep_merge"]
