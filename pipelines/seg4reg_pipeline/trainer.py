"""The Trainer's `run_fn`: the package's `train()` on the ExampleGen splits, then the `seg4reg export` SavedModel.

`fn_args.custom_config`: {"config_yaml": the resolved experiment config (YAML text), "config_path",
"overrides"} (the last two are provenance). The model is trained under the config's tf.distribute
strategy (`train.strategy`) into `fn_args.model_run_dir` (run directory: TensorBoard logs in
`tensorboard/`, where TFX's ModelRun artifact keeps them) and exported, with the three signatures
and the warmup requests of `seg4reg export`, to `fn_args.serving_model_dir`.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile

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
    from seg4reg_tf.export.savedmodel import export_model
    from seg4reg_tf.training.run import load_run
    from seg4reg_tf.training.train import train

    from seg4reg_pipeline.staging import stage_splits

    cfg = experiment_config(fn_args.custom_config)
    run_dir = fn_args.model_run_dir
    with tempfile.TemporaryDirectory(prefix="seg4reg-train-data-") as data_root:
        n_train, n_eval = stage_splits(fn_args.train_files, fn_args.eval_files, data_root)
        log.info("Trainer: %d train / %d eval examples, config %s, strategy %s, %d epochs",
                 n_train, n_eval, cfg.name, cfg.train.strategy, cfg.train.epochs)
        summary = train(cfg, data_root, run_dir, verbose=2)
    monitor = cfg.train.checkpoint_monitor
    log.info("Trainer: best %s %s at epoch %s, %s s", monitor, summary.get("best_" + monitor),
             summary.get("best_epoch"), summary.get("wall_time_s"))
    trained_cfg, model = load_run(run_dir)
    base = tempfile.mkdtemp(prefix=".export-", dir=os.path.dirname(os.path.abspath(fn_args.serving_model_dir)))
    try:
        staged = export_model(model, trained_cfg.data, base, 1, config=trained_cfg)
        os.rename(staged, fn_args.serving_model_dir)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    log.info("Trainer: SavedModel written to %s", fn_args.serving_model_dir)
