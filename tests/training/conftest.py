"""The tiny experiment config fixture (tests/fixtures.py; the tiny dataset fixture is in tests/conftest.py)."""
from __future__ import annotations

import pytest

from tests.fixtures import TINY_EXPERIMENT


@pytest.fixture
def tiny_cfg():
    from seg4reg_tf.training.config import config_from_dict

    def make(overrides=()):
        return config_from_dict(TINY_EXPERIMENT, list(overrides))
    return make
