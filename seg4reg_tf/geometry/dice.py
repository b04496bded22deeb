"""Dice of vertebra label maps (0 background, 1..K-1 = T1..L5), pure NumPy.

Two means over a data set, not to be confused:
- per image: `vertebra_dice` of each [H, W] pair, then averaged over images (`seg4reg evaluate`,
  report.json `dice_mean`);
- pooled: `vertebra_dice` of the whole [N, H, W] stack (counts summed over all images first): the
  pure twin of the Keras metric `models.metrics.PooledDice` logged as `dice` during training.
"""
from __future__ import annotations

import numpy as np

from seg4reg_tf.geometry.masks import N_CLASSES


def vertebra_dice(pred_labels, true_labels, n_classes: int = N_CLASSES) -> float:
    """Mean over classes 1..n_classes-1 of 2|P ∩ T| / (|P| + |T|), counts over every pixel given.

    Classes absent from both maps are left out; NaN when no vertebra is in either.
    """
    p = np.asarray(pred_labels)
    t = np.asarray(true_labels)
    if p.shape != t.shape:
        raise ValueError(f"label maps: expected equal shapes, got predicted {p.shape} and true {t.shape}")
    p = p.reshape(-1).astype(np.int64)
    t = t.reshape(-1).astype(np.int64)
    pc = np.bincount(p, minlength=n_classes)[:n_classes]
    tc = np.bincount(t, minlength=n_classes)[:n_classes]
    inter = np.bincount(p[p == t], minlength=n_classes)[:n_classes]
    size = (pc + tc)[1:]
    present = size > 0
    if not present.any():
        return float("nan")
    return float(np.mean(2.0 * inter[1:][present] / size[present]))
