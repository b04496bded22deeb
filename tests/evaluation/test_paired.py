"""evaluation.paired: the paired per-image SMAPE difference, its bootstrap interval and the verdict."""
from __future__ import annotations

import numpy as np
import pytest

from seg4reg_tf.evaluation.paired import paired_difference


def test_a_constant_gain_is_a_win_with_a_point_interval():
    a = np.linspace(5.0, 25.0, 40)
    d = paired_difference(a, a - 2.0)
    assert (d.n, d.mean, d.lo, d.hi) == (40, pytest.approx(-2.0), pytest.approx(-2.0), pytest.approx(-2.0))
    assert d.verdict == "B better" and paired_difference(a - 2.0, a).verdict == "A better"


def test_the_interval_has_the_width_of_the_mean_s_spread_and_noise_is_a_tie():
    rng = np.random.default_rng(0)
    a = rng.uniform(5, 25, 400)
    noise = rng.normal(0.0, 3.0, 400)
    d = paired_difference(a, a + noise - noise.mean())  # zero mean difference
    assert d.verdict == "tie" and d.lo < 0 < d.hi
    expected = 2 * 1.96 * noise.std() / np.sqrt(400)  # the normal approximation of the 95% interval
    assert d.hi - d.lo == pytest.approx(expected, rel=0.15)
    shifted = paired_difference(a, a + noise - noise.mean() - 1.0)  # 1 point better: 3.3 standard errors
    assert shifted.verdict == "B better" and shifted.mean == pytest.approx(-1.0)


def test_films_either_answer_did_not_measure_are_left_out_of_both():
    a = np.array([10.0, np.nan, 12.0, 14.0])
    b = np.array([9.0, 1.0, np.nan, 13.0])
    d = paired_difference(a, b)
    assert d.n == 2 and d.mean == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same films"):
        paired_difference(a, b[:3])
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference([1.0, np.nan], [2.0, 3.0])
