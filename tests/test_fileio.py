"""`seg4reg_tf.fileio`: the package's files on any TensorFlow filesystem (local and TF's in-memory ram://)."""
from __future__ import annotations

import errno
import os
import uuid

import pytest
import tensorflow as tf

from seg4reg_tf import fileio


@pytest.fixture(params=["local", "ram"])
def root(request, tmp_path):
    """An empty directory on the local disk or on ram:// (deleted afterwards)."""
    if request.param == "local":
        yield str(tmp_path)
        return
    path = f"ram://fileio-{uuid.uuid4().hex}"
    fileio.makedirs(path)
    yield path
    fileio.rmtree(path, ignore_errors=True)


def test_absolute_keeps_urls_and_anchors_local_paths():
    assert fileio.absolute("gs://bucket/run") == "gs://bucket/run"
    assert fileio.absolute("run") == os.path.join(os.getcwd(), "run")
    assert fileio.join("gs://bucket/run", "model.keras") == "gs://bucket/run/model.keras"


def test_write_read_replace_and_listing(root):
    path = fileio.join(root, "a", "b.txt")
    fileio.write_atomic(path, "héllo\r\n")  # parents made; text is UTF-8, newlines kept
    assert fileio.read_text(path) == "héllo\r\n" and fileio.getsize(path) == len("héllo\r\n".encode())
    assert fileio.listdir(fileio.join(root, "a")) == ["b.txt"]  # no temporary file left
    assert fileio.isfile(path) and not fileio.isdir(path) and fileio.isdir(fileio.join(root, "a"))
    fileio.write_atomic(path, b"new")
    assert fileio.read_bytes(path) == b"new"
    fileio.replace(path, fileio.join(root, "a", "c.txt"))
    assert fileio.listdir(fileio.join(root, "a")) == ["c.txt"]
    fileio.remove(fileio.join(root, "a", "c.txt"))
    fileio.remove(fileio.join(root, "a", "c.txt"), missing_ok=True)
    with pytest.raises(FileNotFoundError, match="c.txt"):
        fileio.remove(fileio.join(root, "a", "c.txt"))
    with pytest.raises(FileNotFoundError, match="missing"):
        fileio.read_bytes(fileio.join(root, "missing"))


def test_move_tree_moves_every_file_and_refuses_an_existing_target(root):
    src, dst = fileio.join(root, "staged"), fileio.join(root, "1")
    for rel, data in (("saved_model.pb", b"graph"), ("variables/variables.index", b"i"),
                      ("assets.extra/config.yaml", b"c")):
        fileio.write_atomic(fileio.join(src, rel), data)
    fileio.makedirs(fileio.join(src, "assets"))  # a sibling whose name prefixes assets.extra (ram:// lists by prefix)
    fileio.move_tree(src, dst, last=("saved_model.pb",))
    assert fileio.walk_files(dst) == ["assets.extra/config.yaml", "saved_model.pb", "variables/variables.index"]
    assert fileio.read_bytes(fileio.join(dst, "saved_model.pb")) == b"graph"
    assert not fileio.exists(fileio.join(src, "saved_model.pb"))
    fileio.write_atomic(fileio.join(root, "other", "x"), b"x")
    with pytest.raises(FileExistsError):
        fileio.move_tree(fileio.join(root, "other"), dst)
    fileio.copy_tree(dst, fileio.join(root, "copy"))
    assert fileio.walk_files(fileio.join(root, "copy")) == fileio.walk_files(dst)


def test_a_failed_atomic_write_leaves_neither_file_nor_temporary(root, monkeypatch):
    path = fileio.join(root, "report.json")

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", src)

    monkeypatch.setattr(fileio, "replace", full_disk)
    with pytest.raises(OSError):
        fileio.write_atomic(path, "{}")
    assert fileio.listdir(root) == []


def test_tensorflow_errors_become_os_errors_naming_the_path():
    with pytest.raises(OSError) as info:
        with fileio.os_errors("/some/file"):
            raise tf.errors.ResourceExhaustedError(None, None, "{{function_node __wrapped__SaveV2}} write failed")
    assert info.value.errno == errno.ENOSPC and "/some/file" in str(info.value)
    with pytest.raises(PermissionError):
        with fileio.os_errors("gs://b/x"):
            raise tf.errors.PermissionDeniedError(None, None, "denied")


def test_is_out_of_space():
    assert fileio.is_out_of_space(OSError(errno.ENOSPC, "full"))
    assert fileio.is_out_of_space(tf.errors.ResourceExhaustedError(None, None, "SaveV2 failed"))
    assert fileio.is_out_of_space(tf.errors.UnknownError(None, None, "x; No space left on device"))
    assert not fileio.is_out_of_space(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"))
    assert not fileio.is_out_of_space(OSError(errno.EACCES, "denied"))
    assert not fileio.is_out_of_space(ValueError("no space left on device"))


def test_json_text_is_strict_json_of_numpy_and_non_finite_values():
    import json

    import numpy as np

    value = {"nan": np.float32("nan"), "arr": np.array([[1.5, np.inf]]), "int": np.int64(4), 2: (1.0, float("-inf")),
             "flag": np.bool_(True), "text": "x"}
    parsed = json.loads(fileio.json_text(value))
    assert parsed == {"nan": None, "arr": [[1.5, None]], "int": 4, "2": [1.0, None], "flag": True, "text": "x"}
    assert fileio.json_text(value).endswith("}\n")
