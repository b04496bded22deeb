"""Training: typed experiment configs, `train` (model.fit or the multi-worker loop), callbacks, strategies, runs."""
from seg4reg_tf._lazy import lazy_getattr
from seg4reg_tf.training.config import (
                                        ConfigError,
                                        ExperimentConfig,
                                        SyntheticConfig,
                                        TrainConfig,
                                        load_config,
                                        save_config,
)

__all__ = ["ConfigError", "ExperimentConfig", "SyntheticConfig", "TrainConfig", "load_config", "save_config",
           "train", "load_run"]


# lazy: `train` and `load_run` pull in the data pipeline and the models
__getattr__ = lazy_getattr(__name__, {"train": "seg4reg_tf.training.train", "load_run": "seg4reg_tf.training.run"})
