"""Reading a run directory written by `seg4reg train`."""
from __future__ import annotations

import dataclasses
import os

import keras

from seg4reg_tf.training.config import ExperimentConfig, load_config


def load_run(run_dir: str, *, model_file: str = "model.keras", compile: bool = False, tta: str | None = None
             ) -> tuple[ExperimentConfig, keras.Model]:
    """(config, model) of a run: RUN/config.yaml and RUN/<model_file> ("model.keras" = best, or "last.keras").

    `tta` ("none" | "flip", `ModelConfig.tta`) replaces the trained config's test-time augmentation in
    both the returned config and the model (so export and `.keras` saves keep it); None keeps it.

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
    if tta is not None:
        cfg.model = dataclasses.replace(cfg.model, tta=tta)  # validates tta
        model.cfg = cfg.model
    return cfg, model
