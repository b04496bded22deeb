"""The tiny base config of the tuning tests: tests/fixtures.py's, trained 1 epoch with augmentation
(the tiny dataset fixture is in tests/conftest.py)."""
from __future__ import annotations

from tests.fixtures import tiny_experiment

TINY = tiny_experiment({"data": {"augment": {"enabled": True, "rotation_deg": 4.0, "scale_range": [0.9, 1.2],
                                             "translate_frac": 0.05}},
                        "train": {"epochs": 1}})
