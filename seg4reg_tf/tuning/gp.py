"""Bayesian optimisation oracle that runs without scikit-learn.

Keras Tuner's `BayesianOptimizationOracle` needs scikit-learn only for its Gaussian-process
regressor. `BayesianOracle` is that oracle with scikit-learn's GP when it is installed and
`NumpyGP` (same kernel: Matern nu=5/2, normalised targets, `alpha` jitter) otherwise.
"""
from __future__ import annotations

import numpy as np
from keras_tuner import Oracle
from keras_tuner.oracles import BayesianOptimizationOracle


def matern52(a: np.ndarray, b: np.ndarray, length_scale: float) -> np.ndarray:
    """Matern-5/2 kernel matrix [len(a), len(b)] of points a [N, D], b [M, D]."""
    d = np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0)) / length_scale
    s5 = np.sqrt(5.0) * d
    return (1.0 + s5 + 5.0 / 3.0 * d ** 2) * np.exp(-s5)


class NumpyGP:
    """GP regression with a Matern-5/2 kernel; the length scale maximises the marginal likelihood
    over a log grid. Targets are normalised (zero mean, unit sd) as with sklearn's normalize_y.

    `fit(x [N, D], y [N])`, `predict(x [M, D], return_std=False) -> mean [M] (, std [M])`.
    Before `fit`, predicts the prior (mean 0, std 1).
    """

    GRID = np.exp(np.linspace(np.log(0.05), np.log(5.0), 25))

    def __init__(self, alpha: float = 1e-4):
        self.alpha = float(alpha)
        self._x = None

    def fit(self, x, y) -> "NumpyGP":
        x = np.asarray(x, dtype=np.float64).reshape(len(y), -1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        self._mean, self._std = y.mean(), (y.std() or 1.0)
        yn = (y - self._mean) / self._std
        best = None
        for ls in self.GRID:
            k = matern52(x, x, ls) + self.alpha * np.eye(len(x))
            try:
                chol = np.linalg.cholesky(k)
            except np.linalg.LinAlgError:
                continue
            w = np.linalg.solve(chol.T, np.linalg.solve(chol, yn))
            nll = 0.5 * yn @ w + np.log(np.diag(chol)).sum()
            if best is None or nll < best[0]:
                best = (nll, ls, chol, w)
        if best is None:
            raise np.linalg.LinAlgError("NumpyGP: kernel matrix not positive definite for any length scale")
        _, self.length_scale, self._chol, self._w = best
        self._x = x
        return self

    def predict(self, x, return_std: bool = False):
        x = np.asarray(x, dtype=np.float64)
        x = x.reshape(len(x), -1)
        if self._x is None:
            mean, std = np.zeros(len(x)), np.ones(len(x))
        else:
            ks = matern52(x, self._x, self.length_scale)
            v = np.linalg.solve(self._chol, ks.T)
            mean = ks @ self._w * self._std + self._mean
            std = np.sqrt(np.maximum(1.0 - (v ** 2).sum(0), 1e-12)) * self._std
        return (mean, std) if return_std else mean


class BayesianOracle(BayesianOptimizationOracle):
    """`BayesianOptimizationOracle` (GP + UCB, random `num_initial_points` first) without the
    scikit-learn requirement: scikit-learn's GP when importable, `NumpyGP` otherwise."""

    def __init__(self, objective=None, max_trials=10, num_initial_points=None, alpha=1e-4, beta=2.6, seed=None,
                 **kwargs):
        Oracle.__init__(self, objective=objective, max_trials=max_trials, seed=seed, **kwargs)
        self.num_initial_points = num_initial_points
        self.alpha = alpha
        self.beta = beta
        self._random_state = np.random.RandomState(self.seed)
        self.gpr = self._make_gpr()

    def _make_gpr(self):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            return NumpyGP(alpha=self.alpha)
        return super()._make_gpr()
