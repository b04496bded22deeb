"""Evaluation of the real model: the Keras front end, and a tiny trained run through `seg4reg evaluate`."""
import json
import os

import numpy as np
import pytest

from seg4reg_tf.cli import main
from seg4reg_tf.data.synth import write_synthetic_dataset
from seg4reg_tf.evaluation.evaluate import evaluate, keras_predict_fn, model_head_name
from seg4reg_tf.export.savedmodel import export_run
from seg4reg_tf.models import build_model
from seg4reg_tf.training.config import config_from_dict
from seg4reg_tf.training.run import load_run
from seg4reg_tf.training.train import train
from tests.fixtures import TINY_SIZE as SIZE
from tests.fixtures import tiny_data_config, tiny_experiment, tiny_model_config, write_spine_records


def test_untrained_real_model_through_keras_front_end(tmp_path):
    cfg = tiny_model_config(head="image")
    model = build_model(cfg, SIZE)
    records = write_spine_records(tmp_path / "imgs", n=3)
    rep = evaluate(keras_predict_fn(model), records, tiny_data_config(), str(tmp_path / "out"),
                   head_name=model_head_name(cfg), batch_size=2, make_plots=False)
    assert rep["head"] == "image" and rep["n_images"] == 3
    assert {"reported", "image", "segmentation", "fitted"} <= set(rep["heads"])
    assert rep["model_size"] == list(SIZE)
    # reported == the image head, since model.head is "image"
    assert rep["heads"]["reported"]["smape"] == pytest.approx(rep["heads"]["image"]["smape"])
    assert rep["dice_mean"] is not None and 0.0 <= rep["dice_mean"] <= 1.0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["n_images"] == 3


@pytest.mark.numeric
def test_end_to_end_tiny_run(tmp_path, capsys):
    """Train 1 tiny epoch on a synthetic set, then `seg4reg evaluate --run`."""
    data = tmp_path / "synth"
    write_synthetic_dataset(str(data), n_train=5, n_test=2, seed=0, height_range=(300, 360), progress=False)
    cfg = config_from_dict(tiny_experiment({
        "data": {"batch_size": 2, "cache": False},
        "model": {"joint_warmup_epochs": 0},
        "train": {"epochs": 1, "steps_per_epoch": 1, "val_steps": 1},
    }))
    run_dir = tmp_path / "run"
    train(cfg, str(data), str(run_dir), verbose=0)
    assert os.path.isfile(run_dir / "model.keras")
    out = tmp_path / "eval"
    rc = main(["evaluate", "--run", str(run_dir), "--data", str(data), "--split", "test", "--out", str(out)])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_images"] == 2 and rep["head"] == load_run(str(run_dir))[0].model.resolved_head
    assert rep["smape"] is not None and np.isfinite(rep["smape"])
    assert "SMAPE" in capsys.readouterr().out

    # The same model exported for TF Serving, evaluated through serving_default with image bytes,
    # must agree with the Keras path (same preprocessing inside the SavedModel).
    base = tmp_path / "served"
    export_run(str(run_dir), str(base), 1)
    out2 = tmp_path / "eval_served"
    rc = main(["evaluate", "--model", str(base), "--data", str(data), "--split", "test", "--out", str(out2)])
    assert rc == 0
    rep2 = json.loads((out2 / "report.json").read_text())
    assert rep2["n_images"] == 2
    assert rep2["smape"] == pytest.approx(rep["smape"], abs=0.05)
    for head in rep["heads"]:
        if head in rep2["heads"] and rep["heads"][head]["smape"] is not None:
            assert rep2["heads"][head]["smape"] == pytest.approx(rep["heads"][head]["smape"], abs=0.5), head
