"""Reading a run directory written by `seg4reg train`."""
from __future__ import annotations

import os

import keras

from seg4reg_tf.training.config import ExperimentConfig, load_config


def load_run(run_dir: str, *, model_file: str = "model.keras", compile: bool = False
             ) -> tuple[ExperimentConfig, keras.Model]:
    """(config, model) of a run: RUN/config.yaml and RUN/<model_file> ("model.keras" = best, or "last.keras").

    Raises:
        FileNotFoundError naming the missing directory or file.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    cfg_path = os.path.join(run_dir, "config.yaml")
    model_path = os.path.join(run_dir, model_file)
    for path, what in ((cfg_path, "the resolved config"), (model_path, "the trained model")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: missing ({what}); is {run_dir} a finished `seg4reg train` run?")
    cfg = load_config(cfg_path)
    import seg4reg_tf.models  # noqa: F401  (registers the custom classes for deserialisation)

    model = keras.saving.load_model(model_path, compile=compile)
    return cfg, model
