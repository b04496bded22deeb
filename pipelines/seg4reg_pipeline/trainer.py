"""The Trainer's `run_fn`: the package's `train()` on the ExampleGen splits, then the `seg4reg export` SavedModel.

`fn_args.train_files` / `fn_args.eval_files` (ExampleGen's GZIP TFRecords of the `train` and `eval`
splits, made by the fixed rule) go to `train()` as they are: training examples and validation examples.
`fn_args.custom_config`: {"config_yaml": the resolved experiment config (YAML text), "config_path",
"overrides"} (the last two are provenance). The model is trained under the config's tf.distribute
strategy (`train.strategy`) into `fn_args.model_run_dir` (run directory: TensorBoard logs in
`tensorboard/`, where TFX's ModelRun artifact keeps them) and exported, with the three signatures
and the warmup requests of `seg4reg export`, to `fn_args.serving_model_dir`. Every path may be on any
TensorFlow filesystem (gs:// on Vertex): files go through `seg4reg_tf.fileio`.
"""
from __future__ import annotations

import logging
import os

import yaml

log = logging.getLogger("seg4reg_pipeline")


def experiment_config(custom_config: dict):
    """The `ExperimentConfig` carried in the Trainer's custom_config."""
    from seg4reg_tf.training.config import config_from_dict

    if not custom_config or "config_yaml" not in custom_config:
        raise ValueError("Trainer custom_config: expected a 'config_yaml' entry (the resolved experiment config)")
    return config_from_dict(yaml.safe_load(custom_config["config_yaml"]))


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (see the module docstring)."""
    from seg4reg_tf import fileio
    from seg4reg_tf.export.layout import SAVED_MODEL_FILE
    from seg4reg_tf.export.savedmodel import export_run
    from seg4reg_tf.training.train import train

    cfg = experiment_config(fn_args.custom_config)
    run_dir = fn_args.model_run_dir
    log.info("Trainer: train %s, eval %s, config %s, strategy %s, %d epochs", list(fn_args.train_files),
             list(fn_args.eval_files), cfg.name, cfg.train.strategy, cfg.train.epochs)
    summary = train(cfg, list(fn_args.train_files), run_dir, val_data=list(fn_args.eval_files), verbose=2)
    monitor = cfg.train.checkpoint_monitor
    log.info("Trainer: %d train / %d eval examples; best %s %s at epoch %s, %s s", summary["n_train"],
             summary["n_val"], monitor, summary.get("best_" + monitor), summary.get("best_epoch"),
             summary.get("wall_time_s"))
    # exported beside the destination, then moved into it whole (saved_model.pb last)
    base = fileio.mkdtemp(os.path.dirname(fn_args.serving_model_dir.rstrip("/")), ".export-")
    try:
        staged = export_run(run_dir, base, 1)
        fileio.move_tree(staged, fn_args.serving_model_dir, last=(SAVED_MODEL_FILE,))
    finally:
        fileio.rmtree(base, ignore_errors=True)
    log.info("Trainer: SavedModel written to %s", fn_args.serving_model_dir)
