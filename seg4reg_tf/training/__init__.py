"""Training: typed experiment configs, `train` (model.fit or the multi-worker loop), callbacks, strategies, runs."""
from seg4reg_tf.training.config import (ConfigError, ExperimentConfig, SyntheticConfig, TrainConfig, load_config,
                                        save_config)

__all__ = ["ConfigError", "ExperimentConfig", "SyntheticConfig", "TrainConfig", "load_config", "save_config",
           "train", "load_run"]


def __getattr__(name):  # lazy: importing the configs must not start TensorFlow
    if name == "train":
        from seg4reg_tf.training.train import train
        return train
    if name == "load_run":
        from seg4reg_tf.training.run import load_run
        return load_run
    raise AttributeError(name)

