"""Issue 20 (7): data root, run directory, export base and evaluation output on a non-local TensorFlow
filesystem (TF's in-memory ram://, standing in for gs://): synthetic data -> train 1 epoch -> export ->
load and predict -> serve -> evaluate, with nothing written to the local disk."""
from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf import fileio
from tests.fixtures import TINY_SIZE, tiny_experiment


@pytest.fixture
def ram_root():
    root = f"ram://roundtrip-{uuid.uuid4().hex}"
    yield root
    fileio.rmtree(root, ignore_errors=True)


def test_train_export_predict_evaluate_on_ram_filesystem(ram_root, tmp_path, monkeypatch):
    from seg4reg_tf.data import aasce
    from seg4reg_tf.data.synth import write_synthetic_dataset
    from seg4reg_tf.evaluation.evaluate import evaluate_saved_model
    from seg4reg_tf.export.layout import latest_version_dir
    from seg4reg_tf.export.savedmodel import export_run
    from seg4reg_tf.training.config import config_from_dict
    from seg4reg_tf.training.run import load_run, run_state
    from seg4reg_tf.training.train import train

    monkeypatch.chdir(tmp_path)  # a path mangled into a local one (e.g. "ram:/..." under the cwd) would land here
    data, run, base, out = (f"{ram_root}/{name}" for name in ("data", "run", "serving/seg4reg", "eval"))
    write_synthetic_dataset(data, 10, 0, 0, height_range=(200, 260), progress=False)

    cfg = config_from_dict(tiny_experiment({"name": "ram", "train": {"epochs": 1, "steps_per_epoch": 1}}))
    summary = train(cfg, data, run, verbose=0)
    assert summary["n_train"] == 8 and summary["n_val"] == 2 and summary["epochs_run"] == 1
    assert summary["train_data"].startswith(data)
    assert fileio.listdir(run) == ["config.yaml", "history.csv", "last.keras", "model.keras", "tensorboard",
                                   "train_summary.json"]  # backup/ gone: the run finished
    assert json.loads(fileio.read_text(f"{run}/train_summary.json"))["best_epoch"] == 1
    assert fileio.read_text(f"{run}/history.csv").startswith("epoch,")
    assert fileio.walk_files(f"{run}/tensorboard")  # TensorBoard event files
    assert run_state(run).status == "finished"

    version_dir = export_run(run, base, 1)
    assert version_dir == f"{base}/1" and fileio.listdir(base) == ["1"]  # no staging directory left
    assert {"saved_model.pb", "assets.extra/tf_serving_warmup_requests", "assets.extra/config.yaml",
            "variables/variables.index"} <= set(fileio.walk_files(version_dir))
    assert latest_version_dir(base) == version_dir

    # the exported graph, loaded from ram://, answers an image read from ram:// as the trained Keras model does
    from seg4reg_tf.data.preprocess import decode_image, preprocess

    records = aasce.load_split(data, "training", progress=False)
    image = records[4].read_image()
    out_sm = tf.saved_model.load(version_dir).signatures["serving_default"](image_bytes=tf.constant([image]))
    trained_cfg, model = load_run(run)
    pre, _ = preprocess(decode_image(tf.constant(image)), trained_cfg.data)
    out_keras = model({"image": pre[tf.newaxis]}, training=False)
    np.testing.assert_allclose(out_sm["cobb_angles"].numpy(), np.asarray(out_keras["cobb_angles"]), atol=1e-3)
    assert out_sm["vertebra_labels"].shape == (1, *TINY_SIZE)

    # the local server polls, loads, warms up and serves the version on ram:// as TF Serving does on gs://
    from seg4reg_tf.serving.manager import ModelManager
    from seg4reg_tf.serving.server import ServerConfig

    manager = ModelManager(ServerConfig(model_base_path=base, enable_batching=False))
    try:
        manager.scan()
        assert manager.states("seg4reg") == {1: ("AVAILABLE", "")}
        served = manager.resolve("seg4reg").run("serving_default", {"image_bytes": np.array([image], object)})
        np.testing.assert_allclose(served["cobb_angles"], out_sm["cobb_angles"].numpy(), atol=1e-4)
    finally:
        manager.stop()

    report = evaluate_saved_model(base, records[:2], out, batch_size=2, make_plots=True)
    assert report["n_images"] == 2 and np.isfinite(report["smape"])
    assert fileio.listdir(out) == ["bland_altman.png", "cases.csv", "pred_vs_true.png", "report.json"]
    assert json.loads(fileio.read_text(f"{out}/report.json"))["n_images"] == 2
    assert fileio.read_bytes(f"{out}/pred_vs_true.png").startswith(b"\x89PNG")

    assert os.listdir(tmp_path) == []  # nothing reached the local disk
