"""The import rules of docs/architecture.md, read from the package's source with `ast`: no import cycle at module
level, no remote-code file importing a package file, no private (`_name`) import across files."""

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "modeling_mtl"
# Copied into every saved folder and imported there by basename: they may import each other only.
REMOTE_CODE = {f"modeling_mtl.{name}" for name in ("configuration_mtl", "modeling_mtl", "inference_mtl", "decoding_mtl",
                                                   "publishing_mtl", "pipeline_mtl", "schema_mtl", "handler")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path):
    """`(module imported, names, top level?)` for each import of a package module in `path`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "modeling_mtl":
                names = [alias.name for alias in node.names]
                # `from . import conll` imports the module modeling_mtl.formats.conll
                submodules = [f"{target}.{n}" for n in names if (REPO / Path(*f"{target}.{n}".split("."))).exists()
                              or (REPO / Path(*f"{target}.{n}".split("."))).with_suffix(".py").exists()]
                yield (target, names, id(node) in top_level)
                for submodule in submodules:
                    yield (submodule, [], id(node) in top_level)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "modeling_mtl":
                    yield (alias.name, [], id(node) in top_level)


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {module_name(path): list(package_imports(path)) for path in SOURCES}


def test_the_package_is_read():
    assert {"modeling_mtl.data", "modeling_mtl.formats", "modeling_mtl.formats.conll"} <= set(GRAPH)


def test_no_import_cycle_at_module_level():
    edges = {module: {target for target, _, top in imports if top and target != module and target in GRAPH}
             for module, imports in GRAPH.items()}
    state, cycles = {}, []

    def visit(module, stack):
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


@pytest.mark.parametrize("module", sorted(REMOTE_CODE))
def test_remote_code_files_import_only_each_other(module):
    imported = {target for target, _, _ in GRAPH[module]}
    assert imported <= REMOTE_CODE, f"{module} imports {sorted(imported - REMOTE_CODE)}"


def test_no_private_name_is_imported_across_files():
    private = [(module, target, name) for module, imports in GRAPH.items() for target, names, _ in imports
               for name in names if name.startswith("_") and not name.startswith("__") and target != module]
    assert not private, private
