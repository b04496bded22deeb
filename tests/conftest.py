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


@pytest.fixture()
def small_disk(tmp_path):
    """`small_disk(kib)` -> a folder on a tmpfs of that size (a real full disk: writes fail with ENOSPC).

    Mounting needs root (the test machines and CI run as root); elsewhere the tests that use it cannot
    make a full disk and say so by failing, not by passing on a simulation."""
    import subprocess

    mounts = []

    def make(kib: int):
        path = tmp_path / f"disk{len(mounts)}"
        path.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"cannot mount a {kib} KiB tmpfs for the full-disk test: {proc.stderr}"
        mounts.append(path)
        return path

    yield make
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
