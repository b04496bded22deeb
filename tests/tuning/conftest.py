"""Shared fixtures for the tuning tests: a tiny synthetic AASCE-format dataset and a tiny base config."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY = {
    "name": "tiny",
    "data": {"image_size": [64, 32], "clahe": False, "batch_size": 4, "shuffle_buffer": 16,
             "augment": {"enabled": True, "rotation_deg": 4.0, "scale_range": [0.9, 1.2], "translate_frac": 0.05}},
    "model": {"variant": "seg4reg_plus", "encoder": "light", "reg_width": 4, "reg_depth": 3, "seg_width": 4,
              "seg_depth": 2, "warmup_epochs": 1},
    "train": {"epochs": 1, "optimizer": "adam", "learning_rate": 0.001, "schedule": "constant", "seed": 0},
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from seg4reg_tf.data.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(str(root), 10, 0, 0, height_range=(200, 260), progress=False)
    return str(root)
