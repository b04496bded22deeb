"""configs/seg4reg_plus_gpu.yaml (the paper-scale GPU recipe) builds, compiles and trains a step on CPU."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from seg4reg_tf.training.config import load_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "seg4reg_plus_gpu.yaml"


def test_the_recipe_is_paper_scale_mixed_precision_and_per_replica():
    cfg = load_config(CONFIG)
    assert tuple(cfg.data.image_size) == (512, 256)
    assert cfg.train.mixed_precision in ("mixed_float16", "mixed_bfloat16")
    assert cfg.train.strategy == "mirrored" and cfg.model.geometry_head and cfg.model.head == "geometry"
    assert "per replica" in CONFIG.read_text()


@pytest.mark.slow
def test_one_step_on_cpu_with_tiny_overrides(tmp_path, tiny_data):
    from seg4reg_tf.training.train import train

    cfg = load_config(CONFIG, ["data.image_size=[64, 32]", "data.batch_size=2", "data.clahe=false",
                               "train.epochs=1", "train.steps_per_epoch=1", "train.val_steps=1",
                               "train.strategy=default"])
    summary = train(cfg, tiny_data, str(tmp_path / "run"), verbose=0)
    assert summary["epochs_run"] == 1 and summary["global_batch"] == 2
    assert keras.config.dtype_policy().name == "float32"
    assert np.isfinite(summary["final"]["loss"])
