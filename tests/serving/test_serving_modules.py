"""ServerConfig validation and the serving package's import layering (no server is started)."""
from __future__ import annotations

import ast
import pathlib

import pytest

import seg4reg_tf.serving
from seg4reg_tf.serving.server import ServerConfig


def test_server_config_validation(tmp_path):
    with pytest.raises(ValueError, match="max_batch_size"):
        ServerConfig(model_base_path=str(tmp_path), max_batch_size=0)
    with pytest.raises(ValueError, match="port"):
        ServerConfig(model_base_path=str(tmp_path), port=70000)
    with pytest.raises(ValueError, match="model_name"):
        ServerConfig(model_base_path=str(tmp_path), model_name="")


PACKAGE = pathlib.Path(seg4reg_tf.serving.__file__).parent
WIRING = {"server.py", "cli.py"}  # the top: the wiring and the command line
FRONT_ENDS = {"seg4reg_tf.serving.rest", "seg4reg_tf.serving.grpc_api"}


def _serving_imports(path: pathlib.Path) -> set[str]:
    """The seg4reg_tf.serving modules a module imports (anywhere in it, any import form)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in out if n.startswith("seg4reg_tf.serving.")}


def test_the_layering_test_sees_the_wiring():
    assert FRONT_ENDS | {"seg4reg_tf.serving.manager"} <= _serving_imports(PACKAGE / "server.py")


@pytest.mark.parametrize("module", sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in WIRING))
def test_only_the_wiring_imports_the_server_and_the_front_ends(module):
    """server.py wires REST and gRPC; nothing below it imports server.py, and no front end imports another."""
    imports = _serving_imports(PACKAGE / module)
    assert "seg4reg_tf.serving.server" not in imports
    assert not (imports & FRONT_ENDS), f"{module} imports a front end: {sorted(imports & FRONT_ENDS)}"


@pytest.mark.parametrize("module", ["core.py", "grpc_api.py", "rest.py", "http_server.py", "status.py",
                                    "warmup_replay.py"])
def test_the_core_and_the_front_ends_do_not_reach_the_manager(module):
    """They are given what they need (limits, `resolve`, a status function, a predict callable), not the
    manager (issue 22): importing it, even for a type, is refused."""
    assert "seg4reg_tf.serving.manager" not in _serving_imports(PACKAGE / module)
