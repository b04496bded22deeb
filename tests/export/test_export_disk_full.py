"""Issue 21: a full disk during `seg4reg export` says what happened and where (no TF trace), exits 1 and
leaves nothing behind: no partial version directory, no staging directory, no base path it created."""
from __future__ import annotations

import errno
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.fixtures import TINY_SIZE, set_seed, tiny_experiment

TF_TRACE = ("{{function_node __wrapped__SaveV2_dtypes_42_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
            "/x/variables/variables_temp/part-00000-of-00001.data-00000-of-00001.tempstate1; No space left on device "
            "[Op:SaveV2]")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run directory (config.yaml, model.keras, train_summary.json) of the tiny model, untrained."""
    import json

    from seg4reg_tf.training.config import config_from_dict, load_config, save_config
    from seg4reg_tf.training.run import config_fingerprint, run_state
    from seg4reg_tf.training.train import compile_model

    run = tmp_path_factory.mktemp("run")
    cfg = config_from_dict(tiny_experiment({"name": "disk_full"}))
    set_seed(0)
    model = compile_model(cfg, 1)
    model({"image": np.zeros((1, *TINY_SIZE, 1), np.float32)})
    save_config(cfg, run / "config.yaml")
    model.save(run / "model.keras")
    (run / "train_summary.json").write_text(json.dumps(
        {"epochs": 1, "config_sha256": config_fingerprint(load_config(run / "config.yaml"))}))
    assert run_state(str(run)).status == "finished"
    return str(run)


def _archive_class():
    """The class `keras.export.ExportArchive()` instantiates (a backend's subclass)."""
    return type(keras.export.ExportArchive())


def _fill_disk_in_savev2(monkeypatch):
    """ExportArchive.write_out writes part of the variables, then fails as SaveV2 does on a full disk."""
    def write_out(self, filepath, **kwargs):
        os.makedirs(os.path.join(filepath, "variables"))
        with open(os.path.join(filepath, "variables", "variables.data-00000-of-00001"), "wb") as f:
            f.write(b"\0" * 1024)
        raise tf.errors.ResourceExhaustedError(None, None, TF_TRACE)

    monkeypatch.setattr(_archive_class(), "write_out", write_out)


def _fill_disk_in_warmup(monkeypatch):
    """The SavedModel is written; the warm-up records hit ENOSPC (a Python OSError this time)."""
    from seg4reg_tf.export import warmup_records

    def write_warmup_requests(path, images, model_name="seg4reg"):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(warmup_records, "write_warmup_requests", write_warmup_requests)


@pytest.mark.parametrize("fill, step", [(_fill_disk_in_savev2, "the SavedModel (graph and variables)"),
                                        (_fill_disk_in_warmup, "tf_serving_warmup_requests")])
def test_full_disk_is_reported_and_nothing_is_left(finished_run, tmp_path, monkeypatch, capsys, fill, step):
    from seg4reg_tf.cli import main

    base = tmp_path / "serving" / "seg4reg"  # does not exist yet: export creates it
    fill(monkeypatch)
    assert main(["export", finished_run, "--out", str(base), "--version", "1"]) == 1
    err = capsys.readouterr().err
    assert "no space left on device" in err and step in err
    assert str(base / "1") in err  # where: the version directory it was writing
    assert "function_node" not in err and "SaveV2" not in err and "Traceback" not in err
    assert not base.exists()  # nothing left behind, not even the base path it had created
    assert os.listdir(tmp_path / "serving") == []


def test_full_disk_keeps_the_versions_already_there(finished_run, tmp_path, monkeypatch):
    from seg4reg_tf.export.savedmodel import export_run
    from seg4reg_tf.fileio import NoSpaceError

    base = tmp_path / "base"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"an earlier version")
    _fill_disk_in_savev2(monkeypatch)
    with pytest.raises(NoSpaceError) as info:
        export_run(finished_run, str(base), 2)
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert sorted(os.listdir(base)) == ["1"]  # no partial 2/, no .tmp-2-* staging directory
    assert (base / "1" / "saved_model.pb").read_bytes() == b"an earlier version"


def test_other_export_errors_are_not_called_a_full_disk(finished_run, tmp_path, monkeypatch):
    from seg4reg_tf.export.savedmodel import export_run

    def write_out(self, filepath, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape [1, 2]")

    monkeypatch.setattr(_archive_class(), "write_out", write_out)
    with pytest.raises(tf.errors.ResourceExhaustedError, match="OOM"):
        export_run(finished_run, str(tmp_path / "base"), 1)
    assert not (tmp_path / "base").exists()
