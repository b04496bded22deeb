"""Two answers on the same films, paired: the mean per-image SMAPE difference and its bootstrap interval.

The project's rule for a win (docs/design.md section 5): B beats A when the 95% interval of
mean(SMAPE_B - SMAPE_A) over the films lies below zero, on two seeds; an interval that holds zero is a tie.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """mean(b - a) over `n` films (percent points of SMAPE) and its bootstrap interval [lo, hi] at `level`."""

    n: int
    mean: float
    lo: float
    hi: float
    level: float

    @property
    def verdict(self) -> str:
        """"B better" (interval below 0), "A better" (above 0) or "tie"."""
        return "B better" if self.hi < 0 else "A better" if self.lo > 0 else "tie"

    def __str__(self) -> str:
        return (f"{self.mean:+.2f} [{self.lo:+.2f}, {self.hi:+.2f}] ({self.level:.0%} bootstrap, "
                f"{self.n} films): {self.verdict}")


def paired_difference(a, b, *, boot: int = 10000, seed: int = 0, level: float = 0.95) -> PairedDifference:
    """The paired difference of per-image SMAPE `a` and `b` [N] (percent, same films in the same order):
    films where either is NaN (not measured) are left out of both; the interval is the percentile
    bootstrap of the mean over films resampled with replacement (`boot` draws, seeded).

    Raises ValueError when the shapes differ or fewer than 2 films have both values."""
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a and b: expected per-image SMAPE of the same films, got {a.size} and {b.size} values")
    d = (b - a)[np.isfinite(a) & np.isfinite(b)]
    if d.size < 2:
        raise ValueError(f"a and b: need at least 2 films measured by both, got {d.size}")
    if not 0 < level < 1 or boot < 100:
        raise ValueError(f"level in (0, 1) and boot >= 100 expected, got {level!r} and {boot!r}")
    rng = np.random.default_rng(seed)
    means = np.empty(boot)
    for start in range(0, boot, 1000):  # bounded memory for large N
        k = min(1000, boot - start)
        means[start:start + k] = d[rng.integers(0, d.size, (k, d.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return PairedDifference(int(d.size), float(d.mean()), float(lo), float(hi), level)
