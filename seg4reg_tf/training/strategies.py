"""tf.distribute strategies by name: "default", "mirrored", "multiworker"."""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # TensorFlow is imported inside the functions: `seg4reg train --help` reads STRATEGY_NAMES
    import tensorflow as tf

STRATEGY_NAMES = ("default", "mirrored", "multiworker")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called `name`.

    - "default": `tf.distribute.get_strategy()` (one device).
    - "mirrored": `MirroredStrategy` over all GPUs, or over all logical CPU devices when there are no
      GPUs and more than one logical CPU is configured (as in the tests); trains with `model.fit`.
    - "multiworker": `MultiWorkerMirroredStrategy` from `TF_CONFIG`; Keras 3 `fit` fails under it
      (keras-team/keras#20585) so `train` uses the custom loop of `multiworker.py`.
      Create it before any other TensorFlow work in the process.
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus or None,
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy: expected one of {', '.join(STRATEGY_NAMES)}, got {name!r}")


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True on the worker that writes files: the only worker, or the chief of a multi-worker cluster."""
    extended = getattr(strategy, "extended", None)
    if extended is not None and hasattr(extended, "should_checkpoint"):
        return bool(extended.should_checkpoint)
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = tf_config.get("task", {})
    task_type, task_id = task.get("type"), task.get("index", 0)
    if task_type is None:
        return True
    if "chief" in tf_config.get("cluster", {}):
        return task_type == "chief"
    return task_type == "worker" and task_id == 0
