"""The tiny base config of the tuning tests (the tiny dataset fixture is in tests/conftest.py)."""
from __future__ import annotations

TINY = {
    "name": "tiny",
    "data": {"image_size": [64, 32], "clahe": False, "batch_size": 4, "shuffle_buffer": 16,
             "augment": {"enabled": True, "rotation_deg": 4.0, "scale_range": [0.9, 1.2], "translate_frac": 0.05}},
    "model": {"variant": "seg4reg_plus", "encoder": "light", "reg_width": 4, "reg_depth": 3, "seg_width": 4,
              "seg_depth": 2, "warmup_epochs": 1},
    "train": {"epochs": 1, "optimizer": "adam", "learning_rate": 0.001, "schedule": "constant", "seed": 0},
}
