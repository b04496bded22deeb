"""Imports only point down the layers of docs/architecture.md ("Layers").

geometry < data, models < training < export, tuning < serving, evaluation, client < the command lines;
modules directly in `seg4reg_tf/` (helpers such as `_lazy`, `config_machinery`) sit below geometry.
Packages on the same layer do not import each other. Every import counts, lazy ones inside
functions included. And no module imports itself through others: the module import graph has no
circle, imports under `if TYPE_CHECKING:` included (a type-only circle is still a real dependency).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seg4reg_tf"
LAYERS = {"geometry": 1, "data": 2, "models": 2, "training": 3, "export": 4, "tuning": 4,
          "serving": 5, "evaluation": 5, "client": 5}
CLI_LAYER = 6
BASE_LAYER = 0


def _unit(parts: tuple[str, ...]) -> tuple[str, int]:
    """(unit name, layer) of a module path relative to seg4reg_tf (e.g. ("serving", "cli"))."""
    if parts[-1] == "cli":
        return "cli", CLI_LAYER
    if len(parts) == 1:  # a module directly in seg4reg_tf/ (a package's __init__ counts as the package)
        return parts[0], LAYERS.get(parts[0], BASE_LAYER)
    if parts[0] not in LAYERS:
        raise AssertionError(f"seg4reg_tf/{'/'.join(parts)}: package {parts[0]!r} has no layer in this test "
                             "and docs/architecture.md")
    return parts[0], LAYERS[parts[0]]


def _imports(path: Path):
    """(line, imported seg4reg_tf module path parts) of every import in the file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "seg4reg_tf" and len(parts) > 1:
                yield node.lineno, tuple(parts[1:])


def _module_parts(path: Path, root: Path) -> tuple[str, ...]:
    parts = path.relative_to(root).with_suffix("").parts
    return parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts


def violations(root: Path = PACKAGE) -> list[str]:
    """Human-readable upward or sideways imports under `root`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        src_unit, src_layer = _unit(_module_parts(path, root))
        for line, target in _imports(path):
            # `from seg4reg_tf.x import name` also yields ("x", "name"): only real modules count
            candidate = root.joinpath(*target)
            if not (candidate.with_suffix(".py").is_file() or candidate.is_dir()):
                continue
            dst_unit, dst_layer = _unit(target)
            if dst_unit == src_unit:
                continue
            if dst_layer > src_layer or (dst_layer == src_layer and src_unit != "cli"):
                found.append(f"{path.relative_to(root.parent)}:{line}: {src_unit} (layer {src_layer}) imports "
                             f"seg4reg_tf.{'.'.join(target)} ({dst_unit}, layer {dst_layer})")
    return found


def test_no_import_points_up_or_sideways():
    assert violations() == []


def test_the_check_catches_an_upward_import(tmp_path):
    """A models module importing evaluation, and geometry importing data, are both reported."""
    fake = tmp_path / "seg4reg_tf"
    for pkg in ("models", "evaluation", "geometry", "data"):
        (fake / pkg).mkdir(parents=True)
        (fake / pkg / "__init__.py").write_text("")
    (fake / "evaluation" / "metrics.py").write_text("")
    (fake / "data" / "aasce.py").write_text("")
    (fake / "models" / "net.py").write_text("from seg4reg_tf.evaluation.metrics import SMAPE\n")
    (fake / "geometry" / "cobb.py").write_text("def f():\n    import seg4reg_tf.data.aasce\n")
    found = violations(fake)
    assert len(found) == 2
    assert any("models (layer 2) imports seg4reg_tf.evaluation.metrics" in v for v in found)
    assert any("geometry (layer 1) imports seg4reg_tf.data.aasce" in v for v in found)


@pytest.mark.parametrize("pkg", sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()))
def test_every_package_has_a_layer(pkg):
    assert pkg in LAYERS, f"seg4reg_tf/{pkg}: add it to LAYERS here and to docs/architecture.md"


def _module_graph(root: Path) -> dict[str, set[str]]:
    """{module: modules of `root` it imports} (dotted names below seg4reg_tf; packages by their __init__)."""
    modules = {".".join(_module_parts(p, root)): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for _, parts in _imports(path):
            for n in range(len(parts), 0, -1):  # `from x.y import z`: z if it is a module, else x.y
                dotted = ".".join(parts[:n])
                if dotted in modules:
                    targets.add(dotted)
                    break
        pkg = name.rpartition(".")[0]
        graph[name] = {t for t in targets if t != name and t != pkg}  # a module may import its own package
    return graph


def cycles(root: Path = PACKAGE) -> list[list[str]]:
    """The import circles between modules under `root` (each as a path that returns to its start)."""
    graph, found, state = _module_graph(root), [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_import_circle_between_modules():
    assert cycles() == [], "import circles (type-only imports count): " + "; ".join(" -> ".join(c) for c in cycles())


def test_the_check_catches_a_type_only_circle(tmp_path):
    """manager -> warmup_replay -> core -> manager, the last only under TYPE_CHECKING, is a circle."""
    fake = tmp_path / "seg4reg_tf"
    (fake / "serving").mkdir(parents=True)
    (fake / "serving" / "__init__.py").write_text("")
    (fake / "serving" / "manager.py").write_text("from seg4reg_tf.serving.warmup_replay import run_warmup\n")
    (fake / "serving" / "warmup_replay.py").write_text("from seg4reg_tf.serving import core\n")
    (fake / "serving" / "core.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                              "    from seg4reg_tf.serving.manager import ModelManager\n")
    (fake / "serving" / "client.py").write_text("from seg4reg_tf.serving.core import x\n")  # not in the circle
    assert violations(fake) == []  # one package: the layer check alone cannot see it
    (circle,) = cycles(fake)
    assert circle[0] == circle[-1] and set(circle) == {"serving.manager", "serving.warmup_replay", "serving.core"}
