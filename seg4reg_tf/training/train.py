"""`train(cfg, data, run_dir, val_data=None)`: build data, model and optimizer, fit, and write the run directory.

`data`: an AASCE-format root (its fixed train/validation split), or TFRecord file patterns of the
training examples with `val_data` those of the validation examples (`data.sources`).

Run directory: config.yaml (resolved), model.keras (best by `train.checkpoint_monitor`; the last epoch of a
refit, `train.fit_on: all`), last.keras,
history.csv, tensorboard/, backup/ (`backup.SafeBackupAndRestore`; deleted when the run finishes),
train_summary.json (written last: the run is finished). With `model.upright_check` the best model's
upright check is fitted on the training images after the fit (`training.upright`). Restarting the same command
after a crash
(even one during a save) resumes after the last finished epoch; a different config in a directory
that holds another run is refused (`run.check_can_train`). Data and run directory may be on any
TensorFlow filesystem (gs://...; `seg4reg_tf.fileio`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time

import keras
import numpy as np

from seg4reg_tf import fileio
from seg4reg_tf.training.backup import find_states
from seg4reg_tf.training.callbacks import best_of_history, make_callbacks, read_history
from seg4reg_tf.training.config import ConfigError, ExperimentConfig, TrainConfig, load_config, save_config
from seg4reg_tf.training.run import SUMMARY, check_can_train, config_fingerprint
from seg4reg_tf.training.schedules import EpochSchedule
from seg4reg_tf.training.strategies import STRATEGY_NAMES, is_chief, make_strategy
from seg4reg_tf.training.upright import fit_saved_upright_check

log = logging.getLogger(__name__)



def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer of `cfg` with its `EpochSchedule` (steps_per_epoch: optimizer steps per epoch)."""
    schedule = EpochSchedule(cfg.learning_rate, cfg.schedule, steps_per_epoch=steps_per_epoch, epochs=cfg.epochs,
                             step_epochs=cfg.step_epochs, step_factor=cfg.step_factor,
                             warmup_epochs=cfg.warmup_epochs)
    common = {"learning_rate": schedule, "clipnorm": cfg.clipnorm}
    wd = cfg.weight_decay or None
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=cfg.momentum, weight_decay=wd, **common)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(weight_decay=wd, **common)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(weight_decay=cfg.weight_decay, **common)
    raise ValueError(f"train.optimizer: expected 'sgd', 'adam' or 'adamw', got {cfg.optimizer!r}")


def build_datasets(cfg: ExperimentConfig, train_split, val_split, global_batch: int, *, multiworker: bool = False):
    """(train_ds, val_ds) for `cfg` (as `train` builds them) from two `data.sources.Split`s: batches of
    `global_batch`; the training set repeats when `train.steps_per_epoch` is set (or multiworker);
    validation takes `train.val_steps`."""
    from seg4reg_tf.data.pipeline import build_dataset

    tc = cfg.train
    train_ds = build_dataset(cfg=cfg.data, training=True, batch_size=global_batch, seed=tc.seed,
                             repeat=tc.steps_per_epoch is not None or multiworker, **train_split.dataset_kwargs())
    val_ds = build_dataset(cfg=cfg.data, training=False, batch_size=global_batch, repeat=multiworker,
                           **val_split.dataset_kwargs())
    if tc.val_steps is not None and not multiworker:
        val_ds = val_ds.take(tc.val_steps)
    return train_ds, val_ds


def compile_model(cfg: ExperimentConfig, steps_per_epoch: int) -> keras.Model:
    """`build_model(cfg.model, cfg.data)` (carrying the data config's preprocessing) under the
    `train.mixed_precision` policy, compiled with `make_optimizer(cfg.train, steps_per_epoch)` and
    `train.jit_compile` (call inside the strategy scope).
    Add `JointWarmup(cfg.model.joint_warmup_epochs)` to its fit callbacks. The global dtype policy is restored."""
    from seg4reg_tf.models import build_model

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(cfg.train.mixed_precision)
    try:
        model = build_model(cfg.model, cfg.data)
    finally:
        keras.config.set_dtype_policy(previous)
    # under mixed_float16, compile wraps the optimizer in a LossScaleOptimizer (the model's policy)
    model.compile(optimizer=make_optimizer(cfg.train, steps_per_epoch), jit_compile=cfg.train.jit_compile)
    return model


def init_weights_file(path: str) -> str:
    """The model file `train.init_weights` names: a run directory's model.keras, or the .keras file itself.

    Raises:
        FileNotFoundError / ConfigError naming `train.init_weights` when there is no such run or file.
    """
    if fileio.isdir(path):
        model_path = fileio.join(path, "model.keras")
        if not fileio.isfile(model_path):
            raise FileNotFoundError(f"train.init_weights: {path!r} is a directory without model.keras "
                                    "(expected a finished run directory or a .keras file)")
        return model_path
    if not fileio.isfile(path):
        raise FileNotFoundError(f"train.init_weights: {path!r} does not exist (expected a finished run "
                                "directory or a .keras file)")
    if not path.endswith(".keras"):
        raise ConfigError(f"train.init_weights: {path!r} is not a .keras file or a run directory")
    return path


def load_init_weights(model: keras.Model, path: str) -> None:
    """Set `model`'s weights to those of the model in `init_weights_file(path)`.

    Every variable must have its counterpart (same order and shape; only the input size may differ), so
    a different architecture is refused rather than partly loaded; the exceptions are a geometry head
    or an upright check the source model lacks: the head starts from its initialisation (fine-tuning a
    model into one with it), the check is fitted after training anyway.

    Raises:
        ConfigError naming `train.init_weights`, the file and the first variable that does not fit.
    """
    model_path = init_weights_file(path)
    source = keras.models.load_model(model_path, compile=False)
    src, dst = source.weights, model.weights
    for part in ("geometry", "upright"):  # parts this model has and the source lacks keep their own values
        if getattr(model, part, None) is not None and getattr(source, part, None) is None:
            fresh = {id(v) for v in getattr(model, part).weights}
            dst = [v for v in dst if id(v) not in fresh]
            log.info("train.init_weights: %s has no %s part; it keeps its initialisation", model_path, part)
    if len(src) != len(dst):
        raise ConfigError(f"train.init_weights: {model_path!r} holds {len(src)} variables, this model has "
                         f"{len(dst)}: expected a model of the same model config (only the input size may differ)")
    for s, d in zip(src, dst):
        if tuple(s.shape) != tuple(d.shape):
            raise ConfigError(f"train.init_weights: variable {d.path} of this model has shape {tuple(d.shape)}, "
                             f"{model_path!r} has {s.path} of shape {tuple(s.shape)}: expected a model of the "
                             "same model config (only the input size may differ)")
    for s, d in zip(src, dst):
        d.assign(s)
    log.info("initial weights from %s", model_path)




def train(cfg: ExperimentConfig, data, run_dir: str, *, val_data=None, strategy_name: str | None = None,
          extra_callbacks: list | None = None, verbose: int | str = "auto") -> dict:
    """Train `cfg` into `run_dir` on `data` (and `val_data`), as `data.sources.training_splits` reads them.

    Args:
        cfg: the experiment.
        data: an AASCE-format root (split "training", fixed train/val split: index % 5 == 4 validates),
            or TFRecord file paths / glob patterns (a string or a list) of the training examples.
        val_data: with TFRecord `data`, the validation examples' paths / patterns; None for a root.
        strategy_name: overrides `cfg.train.strategy` ("default" | "mirrored" | "multiworker").
        extra_callbacks: appended after the standard ones (fit path only).
        verbose: Keras progress-bar setting.
    Returns:
        The summary also written to RUN/train_summary.json: epochs, initial_epoch (epochs done before this
        call), wall_time_s, best_<monitor>, best_epoch (1-based, as the progress bar), images_per_s,
        global_batch, replicas, strategy, n_train, n_val, train_data / val_data (where the examples
        came from), config_sha256 (of config.yaml); with `model.upright_check`, "upright_check" (its fit
        on the unaugmented training images, `training.upright.fit_saved_upright_check`).
    Raises:
        run.RunStateError when `run_dir` holds a run of another config; FileNotFoundError,
        aasce.AasceFormatError or ValueError naming the data that cannot be read (before `run_dir` changes).
    """
    from seg4reg_tf.data.sources import training_splits

    name = strategy_name or cfg.train.strategy
    if name not in STRATEGY_NAMES:
        raise ValueError(f"strategy: expected one of {', '.join(STRATEGY_NAMES)}, got {name!r}")
    strategy = make_strategy(name)  # first: MultiWorkerMirroredStrategy must precede other TF work
    chief = is_chief(strategy)
    run_dir = fileio.absolute(run_dir)
    tc = cfg.train
    monitor = tc.checkpoint_monitor
    select_best = tc.fit_on == "train"  # a refit on every image keeps its last epoch: nothing held out selects
    history_path = fileio.join(run_dir, "history.csv")
    backup_dir = fileio.join(run_dir, "backup")
    if chief:
        check_can_train(cfg, run_dir)  # RunStateError: another config's run lives here
    # data errors before anything in run_dir changes
    train_split, val_split = training_splits(data, val_data, tc.fit_on, tc.val_fold)
    model = None  # for the size a full disk reports
    with _full_disk_named(run_dir, lambda: model):
        fileio.makedirs(run_dir)
        if tc.init_weights:
            init_weights_file(tc.init_weights)  # likewise a missing init_weights file
        resuming = False
        if chief:
            resuming = _prepare_run_dir(run_dir, backup_dir, history_path)
            save_config(cfg, fileio.join(run_dir, "config.yaml"))

        keras.utils.set_random_seed(tc.seed)
        replicas = strategy.num_replicas_in_sync
        global_batch = cfg.data.batch_size * replicas
        print(f"train: global batch {global_batch} = data.batch_size {cfg.data.batch_size} (per replica) x "
              f"{replicas} replica(s) ({name} strategy); dtype policy {tc.mixed_precision}, "
              f"XLA {'on' if tc.jit_compile else 'off'}", flush=True)
        full_steps = math.ceil(train_split.count / global_batch)
        steps_per_epoch = tc.steps_per_epoch or full_steps

        multiworker = name == "multiworker"
        train_ds, val_ds = build_datasets(cfg, train_split, val_split, global_batch, multiworker=multiworker)

        with strategy.scope():
            model = compile_model(cfg, steps_per_epoch)
            if tc.init_weights:
                load_init_weights(model, tc.init_weights)

        t0 = time.perf_counter()
        fitted = _fit(cfg, model, strategy if multiworker else None, train_ds, val_ds, run_dir,
                      steps_per_epoch=steps_per_epoch, global_batch=global_batch, val_count=val_split.count,
                      resuming=resuming, extra_callbacks=extra_callbacks, verbose=verbose)
        wall = time.perf_counter() - t0
        summary = {"name": cfg.name, "strategy": name, "replicas": int(replicas), "global_batch": int(global_batch),
                   "n_train": train_split.count, "n_val": val_split.count, "train_data": train_split.origin,
                   "val_data": val_split.origin, "steps_per_epoch": int(steps_per_epoch),
                   "epochs": tc.epochs, "initial_epoch": int(fitted["initial_epoch"]),
                   "epochs_run": int(fitted["epochs_run"]), "wall_time_s": round(wall, 3),
                   "images_per_s": round(fitted["images"] / max(fitted["train_seconds"], 1e-9), 3),
                   "model_keras": f"best {monitor}" if select_best else "last epoch (train.fit_on: all)"}
        if chief:
            _finish_run(cfg, run_dir, summary, train_split, val_split)
    return summary


def _fit(cfg: ExperimentConfig, model, multiworker, train_ds, val_ds, run_dir: str, *, steps_per_epoch: int,
         global_batch: int, val_count: int, resuming: bool, extra_callbacks, verbose) -> dict:
    """`model.fit` with the standard callbacks, or the custom loop under `multiworker` (its strategy; None:
    fit); {"initial_epoch", "epochs_run", "images", "train_seconds"}."""
    tc = cfg.train
    monitor, select_best = tc.checkpoint_monitor, tc.fit_on == "train"
    if multiworker is not None:
        from seg4reg_tf.training.multiworker import fit_custom_loop

        val_steps = tc.val_steps or math.ceil(val_count / global_batch)
        return fit_custom_loop(multiworker, model, train_ds, val_ds, run_dir=run_dir, epochs=tc.epochs,
                               steps_per_epoch=steps_per_epoch, val_steps=val_steps, global_batch=global_batch,
                               monitor=monitor, joint_warmup_epochs=cfg.model.joint_warmup_epochs,
                               select_best=select_best)
    history_path = fileio.join(run_dir, "history.csv")
    resumed_best = best_of_history(read_history(history_path), monitor)[0] if resuming else math.inf
    callbacks = make_callbacks(run_dir, monitor=monitor, joint_warmup_epochs=cfg.model.joint_warmup_epochs,
                               global_batch=global_batch, resumed_best=resumed_best, select_best=select_best)
    history = model.fit(train_ds, epochs=tc.epochs, steps_per_epoch=tc.steps_per_epoch, validation_data=val_ds,
                        callbacks=callbacks + list(extra_callbacks or ()), verbose=verbose, shuffle=False)
    return {"initial_epoch": history.epoch[0] if history.epoch else tc.epochs, "epochs_run": len(history.epoch),
            "images": callbacks[0].total_images, "train_seconds": callbacks[0].total_seconds}


def _finish_run(cfg: ExperimentConfig, run_dir: str, summary: dict, train_split, val_split) -> None:
    """The chief's last steps: model.keras in place, the upright check, the best epoch, and
    train_summary.json written last (from then on the run counts as finished)."""
    monitor = cfg.train.checkpoint_monitor
    rows = read_history(fileio.join(run_dir, "history.csv"))
    best, best_epoch = best_of_history(rows, monitor)
    model_path = fileio.join(run_dir, "model.keras")
    if not fileio.exists(model_path) and fileio.exists(fileio.join(run_dir, "last.keras")):
        log.warning("%s was never logged; model.keras is the last model", monitor)
        fileio.copy(fileio.join(run_dir, "last.keras"), fileio.incoming_path(model_path))
        fileio.replace(fileio.incoming_path(model_path), model_path)
    if cfg.model.upright_check:
        summary["upright_check"] = fit_saved_upright_check(model_path, cfg.data, train_split, val_split)
    # epochs count from 1 here, as the progress bar does (history.csv's `epoch` column is 0-based)
    summary.update({f"best_{monitor}": best if math.isfinite(best) else None,
                    "best_epoch": None if best_epoch is None else int(best_epoch) + 1,
                    "epochs_in_history": len(rows), "final": rows[-1] if rows else {},
                    "config_sha256": config_fingerprint(load_config(fileio.join(run_dir, "config.yaml")))})
    fileio.write_atomic(fileio.join(run_dir, SUMMARY), json.dumps(summary, indent=2, default=float))


@contextlib.contextmanager
def _full_disk_named(run_dir: str, model):
    """Re-raise a full disk inside the block as `fileio.NoSpaceError` (no TensorFlow trace); `model()`: the model
    so far, or None, whose variables (weights and optimizer state) a checkpoint holds."""
    try:
        yield
    except Exception as err:
        if not fileio.is_out_of_space(err):
            raise
        where = getattr(err, "filename", None) or next(iter(re.findall(re.escape(run_dir) + r"[^\s;:'\"]*",
                                                                        str(err))), run_dir)
        m = model()
        size = ""
        if m is not None:
            variables = list(m.weights) + (list(m.optimizer.variables) if m.optimizer is not None else [])
            mb = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables) / 2**20
            size = f" (at least {mb:.2f} MB needed: the model's weights and optimizer state)"
        raise fileio.NoSpaceError(f"no space left on device while writing {where}{size}; the disk or quota holding "
                              f"{run_dir} is full. Free space and run the same command again: training resumes "
                              "after the last complete epoch") from None


def _prepare_run_dir(run_dir: str, backup_dir: str, history_path: str) -> bool:
    """Make `run_dir` an unfinished run of the config about to be written; returns whether it resumes.

    Resuming (an intact backup): history.csv keeps only the epochs the backup holds. Fresh: the
    previous run's history, checkpoints and an unusable backup are removed (with a warning).
    """
    fileio.remove(fileio.join(run_dir, SUMMARY), missing_ok=True)  # in progress from now on; written at the end
    states = find_states(backup_dir) if fileio.isdir(backup_dir) else []
    if states:
        done = states[0].epochs_done
        rows = read_history(history_path)
        if any(r.get("epoch", 0) >= done for r in rows if isinstance(r.get("epoch"), int)):
            _truncate_history(history_path, done)
        log.info("resuming %s after epoch %d", run_dir, done)
        return True
    if fileio.isdir(backup_dir) and fileio.listdir(backup_dir):
        log.warning("%s holds no usable state (%s); starting the run over from epoch 1",
                    backup_dir, ", ".join(fileio.listdir(backup_dir)))
        fileio.rmtree(backup_dir, ignore_errors=True)
    for name in ("history.csv", "model.keras", "last.keras"):  # a fresh run: nothing of an earlier one
        fileio.remove(fileio.join(run_dir, name), missing_ok=True)
    return False


def _truncate_history(path: str, epochs: int) -> None:
    """Keep the header and the rows of epochs < `epochs` (the epochs a restored backup holds)."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(fileio.read_text(path), newline="")))
    if not rows:
        return
    col = rows[0].index("epoch") if "epoch" in rows[0] else 0
    kept = [rows[0]] + [r for r in rows[1:] if r and r[col].isdigit() and int(r[col]) < epochs]
    out = io.StringIO(newline="")
    csv.writer(out).writerows(kept)
    fileio.write_atomic(path, out.getvalue())
