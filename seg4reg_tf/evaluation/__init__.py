"""Evaluation: `evaluate` with reports (every head, the seg-derived angles, attention) and plots.

`from seg4reg_tf.evaluation import evaluate` works lazily (matplotlib/TF load only when used).
"""
from seg4reg_tf._lazy import lazy_getattr

__getattr__ = lazy_getattr(__name__, {
    "evaluate": "seg4reg_tf.evaluation.evaluate",
    "evaluate_run": "seg4reg_tf.evaluation.evaluate",
    "evaluate_saved_model": "seg4reg_tf.evaluation.evaluate",
})
