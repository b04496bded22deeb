"""Intervals refitted on a site's own labelled films (`seg4reg calibrate`): the same network, a new version.

Films at a new site differ from the training films (scanner, exposure, population), and a 90% interval
calibrated elsewhere may hold 80% there. Given the site's labelled films, `calibrate` measures the
coverage and width of the version's current intervals on them, refits the split-conformal quantile q per
angle on the measurable ones (the difficulty score, `AngleIntervals.weights`, is kept; a version without
intervals gets the constant score), and exports the same network with the new constants as a new
version. The coverage the new constants will have on further films of that site is estimated by
cross-fitting: q from a random half, measured on the other half, both ways, `HALVINGS` times.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Sequence

import numpy as np

from seg4reg_tf import fileio
from seg4reg_tf.export import intervals as angle_intervals
from seg4reg_tf.export.layout import INTERVALS_RELPATH, version_dirs

MIN_FILMS = 20  # measurable labelled films: the 90% quantile is then the 19th of 20 ordered errors
HALVINGS = 200


class CalibrationError(ValueError):
    """Films that cannot calibrate (too few measurable, no labels); the message says how many and why."""


@dataclasses.dataclass(frozen=True)
class AngleCoverage:
    """Coverage (fraction of films whose true angle lies inside) and mean width (deg) per angle."""

    coverage: tuple
    width: tuple

    def __str__(self) -> str:
        return ", ".join(f"{name} {c:.1%} at {w:.1f} deg" for name, c, w in
                         zip(angle_intervals.ANGLES, self.coverage, self.width))


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What `calibrate` measured and wrote: `n_films` labelled, `n_measurable` used; `before` the current
    intervals on them (None without intervals), `after` the cross-fitted estimate of the new ones,
    `intervals` the new constants, `version_dir` the new version, `max_change_deg` the largest change of
    an angle output between the two versions on the site's first films (0: the same network)."""

    n_films: int
    n_measurable: int
    before: AngleCoverage | None
    after: AngleCoverage
    intervals: angle_intervals.AngleIntervals
    version_dir: str
    max_change_deg: float


def _coverage(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray) -> AngleCoverage:
    inside = (truth >= lower) & (truth <= upper)
    return AngleCoverage(tuple(float(v) for v in inside.mean(axis=0)), tuple(float(v) for v in
                                                                             (upper - lower).mean(axis=0)))


def _cross_fitted(scores: np.ndarray, half_width: np.ndarray, answer: np.ndarray, truth: np.ndarray,
                  level: float, seed: int = 0) -> tuple[float, float]:
    """(coverage, mean width) of one angle's interval answer +- q * sigma (lower clipped at 0) with q from
    one random half of the films, measured on the other, both ways, HALVINGS times; `half_width` is sigma."""
    rng = np.random.default_rng(seed)
    n = len(scores)
    cov, width = [], []
    for _ in range(HALVINGS):
        perm = rng.permutation(n)
        for cal, test in ((perm[: n // 2], perm[n // 2:]), (perm[n // 2:], perm[: n // 2])):
            q = angle_intervals.conformal_quantile(scores[cal], level)
            lo = np.maximum(answer[test] - q * half_width[test], 0.0)
            hi = answer[test] + q * half_width[test]
            cov.append(np.mean((truth[test] >= lo) & (truth[test] <= hi)))
            width.append(np.mean(hi - lo))
    return float(np.mean(cov)), float(np.mean(width))


def current_intervals(version_dir) -> angle_intervals.AngleIntervals | None:
    """The version's `AngleIntervals` (assets.extra/intervals.json), or None when it has none."""
    path = fileio.join(os.fspath(version_dir), INTERVALS_RELPATH)
    return angle_intervals.read(path) if fileio.isfile(path) else None


def calibrate(version_dir, records: Sequence, out_base, version: int | None = None, *, level: float = 0.9,
              source: str = "") -> Calibration:
    """Refit the intervals of the one-network version `version_dir` on labelled `records` (`AasceRecord`s)
    and export the same network with them as `out_base`/`version` (default: the next free number).

    Raises CalibrationError (nothing written) with fewer than MIN_FILMS measurable labelled films; ValueError
    naming the version when it is an ensemble or not a float16-weight export (`unpack_single`).
    """
    import tensorflow as tf

    from seg4reg_tf.evaluation.evaluate import saved_model_outputs
    from seg4reg_tf.export.savedmodel import ANGLE_OUTPUTS, export_model
    from seg4reg_tf.export.unpack import unpack_single

    version_dir = os.fspath(version_dir)
    records = [r for r in records if r.angles is not None]
    if len(records) < MIN_FILMS:
        raise CalibrationError(f"{len(records)} labelled films; calibrating a {level:.0%} interval needs at least "
                               f"{MIN_FILMS} measurable ones")
    out = saved_model_outputs(version_dir, records, angle_intervals.REQUIRED_OUTPUTS,
                              optional=angle_intervals.OUTPUTS, desc="calibration films")
    truth = np.stack([np.asarray(r.angles, np.float64) for r in records])
    ok = out["measurable_score"].reshape(-1) >= 0.5
    n_ok = int(ok.sum())
    if n_ok < MIN_FILMS:
        raise CalibrationError(f"{n_ok} of {len(records)} labelled films are measurable; calibrating a {level:.0%} "
                               f"interval needs at least {MIN_FILMS}")
    old = current_intervals(version_dir)
    before = None
    if old is not None and "cobb_angles_lower" in out:
        before = _coverage(out["cobb_angles_lower"][ok], out["cobb_angles_upper"][ok], truth[ok])
    weights = old.weights if old is not None else [np.eye(1 + len(angle_intervals.FEATURES))[0]] * 3
    floor = old.floor if old is not None else (0.1,) * 3
    shape = angle_intervals.AngleIntervals(weights=weights, floor=floor, q=(1.0,) * 3, level=level)
    sig = angle_intervals.sigma(shape, angle_intervals.difficulty_features(
        {k: tf.constant(out[k][ok]) for k in angle_intervals.REQUIRED_OUTPUTS})).numpy().astype(np.float64)
    answer, truth = out["cobb_angles"][ok].astype(np.float64), truth[ok]
    scores = np.abs(answer - truth) / sig
    qs, cov, width = [], [], []
    for k in range(3):
        qs.append(angle_intervals.conformal_quantile(scores[:, k], level))
        c, w = _cross_fitted(scores[:, k], sig[:, k], answer[:, k], truth[:, k], level)
        cov.append(c)
        width.append(w)
    if not all(math.isfinite(q) for q in qs):
        raise CalibrationError(f"{n_ok} measurable films give no finite {level:.0%} quantile")
    name = os.path.basename(os.path.normpath(version_dir))
    score = f"the difficulty score of version {name}" if old is not None else \
        f"a constant difficulty score (version {name} had no intervals)"
    fitted = (f"refitted by seg4reg calibrate on {n_ok} measurable of {len(records)} labelled films"
              f"{' of ' + source if source else ''}; split conformal, nominal {level:.0%}, {score}")
    new = angle_intervals.AngleIntervals(weights=weights, floor=floor, q=qs, level=level, fitted=fitted)
    cfg, model = unpack_single(version_dir)
    if version is None:
        version = max(version_dirs(out_base), default=0) + 1 if fileio.isdir(out_base) else 1
    path = export_model(model, out_base, version, config=cfg, weights_dtype="float16", intervals=new)
    first = tf.constant([r.read_image() for r in records[:4]])
    old_out, new_out = (tf.saved_model.load(p).signatures["serving_default"](image_bytes=first)
                        for p in (version_dir, path))
    change = max(float(np.max(np.abs(old_out[k].numpy() - new_out[k].numpy()))) for k in ANGLE_OUTPUTS if k in old_out)
    return Calibration(len(records), n_ok, before, AngleCoverage(tuple(cov), tuple(width)), new, str(path), change)
