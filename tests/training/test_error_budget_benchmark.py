"""benchmarks/error_budget.py: R on the image, the predicted and the true spine mask of a tiny model."""
from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures import load_benchmark


def _bench():
    return load_benchmark("error_budget")


def test_error_budget_scores_r_on_each_input(tiny_data, tiny_cfg):
    from seg4reg_tf.data.pipeline import build_dataset
    from seg4reg_tf.data.sources import fixed_split
    from seg4reg_tf.models import build_model

    cfg = tiny_cfg()
    model = build_model(cfg.model, cfg.data.image_size)
    val = fixed_split(tiny_data)[1]
    ds = build_dataset(None, cfg.data, training=False, records=val, batch_size=1)
    budget = _bench().error_budget(model, ds)
    assert set(budget) == {"image", "segmentation", "true_mask"}

    # the true-mask row by hand: R on labels > 0, the official SMAPE (README)
    pred, true = [], []
    for _, y in ds:
        m = (np.asarray(y["labels"]) > 0).astype("float32")[..., None]
        pred.append(np.asarray(model.regressor(m)["angles"]))
        true.append(np.asarray(y["angles"]))
    pred, true = np.concatenate(pred), np.concatenate(true)
    want = 100 * np.mean(np.abs(pred - true).sum(1) / (pred + true).sum(1))
    assert budget["true_mask"]["n"] == len(val) == len(true)
    assert budget["true_mask"]["smape"] == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(budget["true_mask"]["mae"], np.abs(pred - true).mean(0), rtol=1e-5)
    assert budget["segmentation"]["smape"] != pytest.approx(want)  # another input, another number
