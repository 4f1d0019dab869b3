"""The package's import structure: layers only point down, imports are relative, nothing hides in functions.

Layers, bottom to top (a module may import its own layer and those below)::

    0 utils                      atomic writes, errors, argument checks, version
    1 operators, datasets        operator algebra; file formats and loaders
    2 solver core                solvers/*.py: Solver, driver, CG, relaxation, preconditioners, imaging baselines
    3 learned methods            solvers/<method>/ and their shared training and weights plumbing
                                 (a method's folder is its whole room: its ``recipe*``/``bench*`` modules
                                 count as layer 5 and its ``commands*`` modules as layer 6)
    4 problems                   generators that run solvers (smoke, Darcy, sequences, brain, simulation)
    5 pipelines, benchmarks      training recipes, reconstruction, benchmark harness
    6 cli, the package root      commands; ``krylearn/__init__.py`` re-exports the public API

The repository root is the package ``krylearn``, so every import inside it is
relative and resolves on disk to the file that runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("utils", "operators", "datasets", "solvers", "problems", "pipelines", "benchmarks", "cli")
#: Learned-method plumbing that lives beside the core files but belongs to layer 3.
LEARNED_MODULES = {"solvers.learned"}
#: Third-party packages that are optional; an import of them (or of a krylearn module that needs them)
#: may sit inside a function.
OPTIONAL = {"nilearn", "cupy", "jax", "warp", "matplotlib", "tqdm"}


def _modules() -> dict[str, Path]:
    mods = {"": ROOT / "__init__.py", "__main__": ROOT / "__main__.py"}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            if "scripts" in rel.parts or "results" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def layer(mod: str) -> int:
    if mod in ("", "__main__") or mod.startswith("cli"):
        return 6
    top, _, rest = mod.partition(".")
    if top == "utils":
        return 0
    if top in ("operators", "datasets"):
        return 1
    if top == "solvers":
        if mod in LEARNED_MODULES or any(mod.startswith(m + ".") for m in LEARNED_MODULES):
            return 3
        if not (ROOT / "solvers" / rest.split(".")[0]).is_dir():
            return 2
        leaf = rest.split(".")[-1]
        if leaf.startswith("commands"):
            return 6
        if leaf.startswith(("recipe", "bench")):
            return 5
        return 3
    if top == "problems":
        return 4
    if top in ("pipelines", "benchmarks"):
        return 5
    raise AssertionError(f"module {mod!r} is in no layer: add its folder to the layer map")


def _resolve(mod: str, node: ast.ImportFrom) -> list[str]:
    is_pkg = MODULES[mod].name == "__init__.py"
    base = mod.split(".") if mod else []
    if not is_pkg:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    target = ".".join(base + ([node.module] if node.module else []))
    out = []
    for alias in node.names:  # `from . import x` may name a submodule
        sub = f"{target}.{alias.name}" if target else alias.name
        out.append(sub if sub in MODULES else target)
    return out


def _imports(mod: str):
    """``(target module, line, inside a function, third-party top name)`` for every import in ``mod``."""
    tree = ast.parse(MODULES[mod].read_text())
    in_function = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                in_function.add(id(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            for t in _resolve(mod, node):
                yield t, node.lineno, id(node) in in_function, None
        elif isinstance(node, ast.ImportFrom):
            yield None, node.lineno, id(node) in in_function, node.module
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield None, node.lineno, id(node) in in_function, a.name


def _needs_optional(mod: str) -> bool:
    return any(third and third.split(".")[0] in OPTIONAL and not inside
               for _, _, inside, third in _imports(mod))


def test_every_module_has_a_layer():
    for mod in MODULES:
        layer(mod)


def test_imports_only_point_down():
    bad = []
    for mod in MODULES:
        for target, line, _, _ in _imports(mod):
            if target is not None and layer(target) > layer(mod):
                bad.append(f"{MODULES[mod].relative_to(ROOT)}:{line} imports {target or 'krylearn'} "
                           f"(layer {layer(target)} above {layer(mod)})")
    assert not bad, "\n".join(bad)


def test_internal_imports_are_relative():
    bad = [f"{MODULES[mod].relative_to(ROOT)}:{line} imports {third}"
           for mod in MODULES if mod != "__main__"
           for _, line, _, third in _imports(mod) if third and third.split(".")[0] == "krylearn"]
    assert not bad, "\n".join(bad)


def test_no_internal_import_hides_in_a_function():
    bad = []
    for mod in MODULES:
        for target, line, inside, third in _imports(mod):
            if inside and target is not None and not _needs_optional(target):
                bad.append(f"{MODULES[mod].relative_to(ROOT)}:{line} imports {target} inside a function")
    assert not bad, f"{len(bad)} hidden imports:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = {m: {t for t, _, inside, _ in _imports(m) if t is not None and not inside and t != m}
             for m in MODULES}
    # a package's __init__ re-exporting its own submodules is not a cycle of the design
    for m in graph:
        graph[m] = {t for t in graph[m] if not (MODULES[t].name == "__init__.py" and m.startswith(t + "."))
                    or t == ""}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("limit", [600])
def test_no_oversized_module(limit):
    big = {str(p.relative_to(ROOT)): n for p in MODULES.values()
           if (n := len(p.read_text().splitlines())) > limit}
    assert not big, f"modules over {limit} lines: {big}"


@pytest.mark.parametrize("limit", [80])
def test_no_oversized_function(limit):
    big = []
    for mod, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not big, f"functions over {limit} lines:\n" + "\n".join(big)
