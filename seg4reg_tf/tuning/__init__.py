"""Hyperparameter search (Keras Tuner): `Seg4RegHyperModel`, `SearchSpace`, `run_search`; CLI `seg4reg tune`.

Imports are lazy (`from seg4reg_tf.tuning import run_search` loads TF only when used).
"""
_LAZY = {
    "Seg4RegHyperModel": "seg4reg_tf.tuning.hypermodel",
    "SearchSpace": "seg4reg_tf.tuning.hypermodel",
    "run_search": "seg4reg_tf.tuning.search",
    "load_space": "seg4reg_tf.tuning.search",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seg4reg_tf.tuning' has no attribute {name!r}")
