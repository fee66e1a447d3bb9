"""The package's shape, checked from its source: imports point one way (no cycles, each layer
imports only the layers below it), no private name crosses a module, and the engine's long
functions say why they are long.

Read as text with ``ast`` (nothing is imported), so a lazy import inside a function counts as a
dependency and an import under ``if TYPE_CHECKING:`` (typing only) does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pyshark_tools"
NAME = PACKAGE.name

#: What each layer may import (besides itself and the standard library / third parties).
#: The flow is capture -> engine -> core -> (report, pipeline) -> render -> notebook / CLI.
LEAVES = {f"{NAME}.errors", f"{NAME}.sanitize", f"{NAME}.core.schema", f"{NAME}.forking"}
ALLOWED: dict[str, set[str]] = {
    "core": LEAVES,
    "engine": LEAVES | {"core"},
    "serverlogs": LEAVES | {"core"},
    "render": LEAVES | {"core", "merged", "serverlogs"},
    "report": LEAVES | {"core", "merged", "render", "notebook"},
    "merged": LEAVES,
    "options": LEAVES | {"core", "engine"},
    "pipeline": LEAVES | {"core", "engine", "report", "options", "serverlogs"},
}

#: The engine's functions over these sizes need a reason written beside them.
MAX_LINES = 60
MAX_BRANCHES = 15
REASON_MARK = "# long:"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _typing_only_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(module: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every runtime import of the package."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _typing_only_lines(tree)
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node.level, node.module)
            if not (target == NAME or target.startswith(NAME + ".")):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    found.append((sub, "", node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(NAME + "."):
                    found.append((alias.name, "", node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _n, _l in _imports(m) if t in MODULES and t != m} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_reader_finds_the_layers() -> None:
    """The checks below are only as good as the module list: the layers must be there."""
    layers = {_layer(m) for m in MODULES}
    assert {"core", "engine", "render", "serverlogs", "probe", "wireshark"} <= layers
    assert f"{NAME}.core.events" in MODULES and f"{NAME}.engine.native" in MODULES


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_crosses_a_module() -> None:
    crossing = [f"{m}:{line} imports {name} from {target}"
                for m in MODULES for target, name, line in _imports(m)
                if name.startswith("_") and not name.startswith("__") and target != m]
    assert crossing == []


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below(layer: str) -> None:
    allowed = ALLOWED[layer]
    wrong = []
    for module in MODULES:
        if _layer(module) != layer:
            continue
        for target, _name, line in _imports(module):
            if target == NAME or _layer(target) == layer:
                continue
            if target in allowed or _layer(target) in allowed:
                continue
            wrong.append(f"{module}:{line} imports {target}")
    assert wrong == []


def _branches(function: ast.AST) -> int:
    count = 0
    for node in ast.walk(function):
        if isinstance(node, ast.If | ast.For | ast.While | ast.Try | ast.With | ast.IfExp
                      | ast.ExceptHandler | ast.match_case | ast.AsyncFor):
            count += 1
        elif isinstance(node, ast.BoolOp):
            count += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            count += 1 + len(node.ifs)
    return count


def _long_functions_without_reason() -> list[str]:
    found = []
    for module, path in MODULES.items():
        if _layer(module) != "engine":
            continue
        source = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(source))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            branches = _branches(node)
            if lines <= MAX_LINES and branches <= MAX_BRANCHES:
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            beside = source[max(first - 3, 0):node.body[0].lineno]
            if not any(REASON_MARK in text for text in beside):
                found.append(f"{module}.{node.name}: {lines} lines, {branches} branches")
    return found


def test_long_engine_functions_say_why() -> None:
    """Over ~60 lines or ~15 branches, an engine function carries a ``# long:`` reason on the
    lines just above its ``def`` (the per-packet loops are long on purpose: a call per packet
    costs time on captures of millions of packets)."""
    assert _long_functions_without_reason() == []
