"""Evaluation: metrics (Keras + pure), seg-derived angles, `evaluate` with reports and plots.

`from seg4reg_tf.evaluation import evaluate` works lazily (matplotlib/TF load only when used).
"""
_LAZY = {
    "evaluate": "seg4reg_tf.evaluation.evaluate",
    "evaluate_run": "seg4reg_tf.evaluation.evaluate",
    "evaluate_saved_model": "seg4reg_tf.evaluation.evaluate",
    "segmentation_angles": "seg4reg_tf.evaluation.seg_angles",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seg4reg_tf.evaluation' has no attribute {name!r}")
