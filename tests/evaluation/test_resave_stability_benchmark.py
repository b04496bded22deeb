"""benchmarks/resave_stability.py: each way of saving a film keeps what it should, and the movement is
the largest change of the three angles, over that angle's half-width."""
from __future__ import annotations

import cv2
import numpy as np

from tests.fixtures import load_benchmark


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_ways_of_saving_a_film():
    bench = load_benchmark("resave_stability")
    gray = np.random.default_rng(0).integers(0, 256, (64, 40)).astype(np.uint8)
    ways = {name: _decode(make(gray)) for name, make in bench.WAYS.items()}
    lossless = ways["PNG 16-bit (lossless)"]
    assert lossless.dtype == np.uint16 and np.array_equal(lossless // 257, gray)
    assert len(np.unique(ways["6 bits"])) <= 64 and len(np.unique(ways["5 bits"])) <= 32
    assert ways["half resolution, JPEG 90"].shape == (32, 20)
    assert np.abs(ways["JPEG 30"].astype(float) - gray).mean() > np.abs(ways["JPEG 90"].astype(float) - gray).mean()
    assert 2.0 < np.std(ways["noise sd 3"].astype(float) - gray) < 4.0


def test_movement_is_the_largest_change_over_its_half_width():
    bench = load_benchmark("resave_stability")
    base = {"cobb_angles": np.array([[40.0, 20.0, 10.0]]), "cobb_angles_lower": np.array([[35.0, 10.0, 8.0]]),
            "cobb_angles_upper": np.array([[45.0, 30.0, 12.0]])}
    change, ratio = bench.movement(base, {"cobb_angles": np.array([[41.0, 17.0, 10.5]])})
    np.testing.assert_allclose(change, [3.0])  # MT moved most
    np.testing.assert_allclose(ratio, [3.0 / 10.0])  # over MT's half-width, not PT's or TL's
