"""The package's shape: every module imports only from its own layer or below, and no modules import each
other in a circle (also through imports inside functions). The layers are the data flow of docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "humansplat"

# Top-level modules and packages of humansplat, lowest first; a module may import from its layer or below.
LAYERS: list[set[str]] = [
    {"utils", "config", "cameras", "keypoints", "media", "metrics"},
    {"gaussians", "meshes"},
    {"body", "preprocess"},
    {"data", "models"},
    {"refine", "novelview", "train", "volume"},
    {"pipeline", "evaluate", "novelview_eval"},  # the evaluation scores the pipeline's stages
    {"outputs", "export", "animate"},
    {"app", "viewer"},
    {"commands", "cli", "__main__"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The humansplat modules a file imports (anywhere in it, except under ``if TYPE_CHECKING:``);
    ``from pkg import sub`` counts as importing ``pkg.sub`` alone when ``sub`` is a module."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}  # fmt: skip
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("humansplat")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("humansplat"):
                subs = {f"{base}.{a.name}" for a in node.names}
                found |= subs & modules
                if subs - modules:
                    found.add(base)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in _imports(path, set(files)) if m in files and m != name} for name, path in files.items()}


def test_every_top_level_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert tops - {"__init__"} <= set(LAYER_OF), f"add to LAYERS: {sorted(tops - set(LAYER_OF) - {'__init__'})}"


def test_no_import_goes_to_a_higher_layer():
    wrong = []
    for name, deps in _graph().items():
        top = name.split(".")[1] if "." in name else None
        for dep in deps:
            target = dep.split(".")[1] if "." in dep else None
            if top and target and LAYER_OF[target] > LAYER_OF[top]:
                wrong.append(f"{name} -> {dep}")
    assert not wrong, "imports from a lower layer to a higher one:\n" + "\n".join(sorted(wrong))


def test_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if dep.startswith(node + "."):  # a package importing its own submodules is not a circle
                continue
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]) if dep in stack else f"{node} -> {dep}")
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import circles:\n" + "\n".join(cycles)
