"""Fixtures shared across test packages."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A 10-image synthetic AASCE-format root (split "training"), images 200-260 px high."""
    from seg4reg_tf.data.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(str(root), 10, 0, 0, height_range=(200, 260), progress=False)
    return str(root)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A local server with two versions, one per test module (the server, REST, batching and client tests)."""
    from tests.serving.served import two_versions

    with two_versions(str(tmp_path_factory.mktemp("models"))) as handles:
        yield handles
