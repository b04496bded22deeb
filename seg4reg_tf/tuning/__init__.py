"""Hyperparameter search (Keras Tuner): `Seg4RegHyperModel`, `SearchSpace`, `run_search`; CLI `seg4reg tune`.

Imports are lazy (`from seg4reg_tf.tuning import run_search` loads TF only when used).
"""
from seg4reg_tf._lazy import lazy_getattr

__getattr__ = lazy_getattr(__name__, {
    "Seg4RegHyperModel": "seg4reg_tf.tuning.hypermodel",
    "SearchSpace": "seg4reg_tf.tuning.hypermodel",
    "run_search": "seg4reg_tf.tuning.search",
    "load_space": "seg4reg_tf.tuning.search",
})
