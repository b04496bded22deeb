"""Training: typed experiment configs, `train` (model.fit or the multi-worker loop), callbacks, strategies, runs."""
from seg4reg_tf._lazy import lazy_getattr

__all__ = ["ConfigError", "ExperimentConfig", "SyntheticConfig", "TrainConfig", "load_config", "save_config",
           "train", "load_run", "JointWarmup"]

_CONFIG = "seg4reg_tf.training.config"
# lazy: the configs import seg4reg_tf.models (Keras, TensorFlow), `train` and `load_run` the data pipeline too;
# `seg4reg train --help` imports this package and must not start TensorFlow
__getattr__ = lazy_getattr(__name__, {**{name: _CONFIG for name in __all__[:6]},
                                      "train": "seg4reg_tf.training.train", "load_run": "seg4reg_tf.training.run",
                                      "JointWarmup": "seg4reg_tf.training.joint_warmup"})
