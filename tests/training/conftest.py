"""A tiny experiment config fixture (the tiny dataset fixture is in tests/conftest.py)."""
from __future__ import annotations

import pytest

TINY = {
    "name": "tiny",
    "data": {"image_size": [64, 32], "clahe": False, "batch_size": 4, "shuffle_buffer": 16,
             "augment": {"enabled": False}},
    "model": {"variant": "seg4reg_plus", "encoder": "light", "reg_width": 4, "reg_depth": 3, "seg_width": 4,
              "seg_depth": 2, "warmup_epochs": 1},
    "train": {"epochs": 2, "optimizer": "adam", "learning_rate": 0.001, "schedule": "constant", "seed": 0},
}


@pytest.fixture
def tiny_cfg():
    from seg4reg_tf.training.config import config_from_dict

    def make(overrides=()):
        return config_from_dict(TINY, list(overrides))
    return make
