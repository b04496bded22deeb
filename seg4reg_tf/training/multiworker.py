"""Custom training loop for `MultiWorkerMirroredStrategy` (Keras 3 `fit` fails under it: keras-team/keras#20585).

`strategy.run` inside a `tf.function`; the model's own `compute_loss` gives the loss; gradients are
all-reduced (summed) by the optimizer, so each replica's loss is scaled to `local_batch / global_batch`
of its mean. Only the chief writes files (history.csv, model.keras best by `monitor`, last.keras,
tensorboard/, backup/ via `backup.write_state`, checkpoints renamed into place); every worker reads
the backup on start (`backup.restore_state`) so a restarted job resumes, even after a torn save.
"""
from __future__ import annotations

import csv
import io
import math
import time

import keras
import tensorflow as tf

from seg4reg_tf import fileio
from seg4reg_tf.training.backup import restore_state, write_state
from seg4reg_tf.training.callbacks import best_of_history, read_history
from seg4reg_tf.training.strategies import is_chief


def _replica_loss_mean(loss, strategy):
    # Keras 3 convention (built-in compute_loss, keras.losses): under tf.distribute the returned loss
    # is already divided by the number of replicas; undo it to get this replica's batch mean.
    return loss * tf.cast(strategy.num_replicas_in_sync, loss.dtype)


def _distribute(strategy, ds):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(ds.with_options(options))


def fit_custom_loop(strategy: tf.distribute.Strategy, model: keras.Model, train_ds: tf.data.Dataset,
                    val_ds: tf.data.Dataset, *, run_dir: str, epochs: int, steps_per_epoch: int, val_steps: int,
                    global_batch: int, monitor: str = "val_smape", joint_warmup_epochs: int = 0,
                    angles_key: str = "cobb_angles", select_best: bool = True) -> dict:
    """Train `model` (compiled, built in `strategy.scope()`) for `epochs` x `steps_per_epoch` steps.

    `train_ds` / `val_ds` yield `(features, targets)` batched at `global_batch` and repeat forever.
    Per epoch it logs `loss` (mean per-image training loss), `val_loss`, `val_smape` (SMAPE % of
    `y_pred[angles_key]` against `targets["angles"]`), `epoch_seconds`, `images_per_s`.
    model.keras is the best epoch by `monitor` (every epoch when not `select_best`).
    Returns {"initial_epoch", "epochs_run", "images", "train_seconds", "history": [logs...]}.
    """
    chief = is_chief(strategy)
    optimizer = model.optimizer
    backup_dir = fileio.join(run_dir, "backup")
    history_path = fileio.join(run_dir, "history.csv")

    def train_step(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            mean = _replica_loss_mean(model.compute_loss(x=x, y=y, y_pred=y_pred, training=True), strategy)
            local = tf.cast(tf.shape(x["image"])[0], mean.dtype)
            scaled = mean * local / tf.cast(global_batch, mean.dtype)  # sum over replicas = global mean
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return mean * local, local

    def val_step(x, y):
        y_pred = model(x, training=False)
        mean = _replica_loss_mean(model.compute_loss(x=x, y=y, y_pred=y_pred, training=False), strategy)
        local = tf.cast(tf.shape(x["image"])[0], mean.dtype)
        t = tf.cast(y["angles"], tf.float64)
        p = tf.cast(y_pred[angles_key], tf.float64)
        num = tf.reduce_sum(tf.abs(p - t), axis=1)
        den = tf.reduce_sum(p + t, axis=1)
        ratio = tf.math.divide_no_nan(num, den)
        return mean * local, local, tf.reduce_sum(100.0 * ratio), tf.cast(tf.shape(ratio)[0], tf.float64)

    def _sum(values):
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]

    @tf.function
    def distributed_train(batch):
        return _sum(strategy.run(train_step, args=batch))

    @tf.function
    def distributed_val(batch):
        return _sum(strategy.run(val_step, args=batch))

    # ---- resume (the weights file holds the optimizer's variables, its iteration count included)
    with strategy.scope():
        optimizer.build(model.trainable_variables)
        initial_epoch = restore_state(model, backup_dir) if fileio.isdir(backup_dir) else 0
    if not initial_epoch and chief:
        fileio.remove(history_path, missing_ok=True)
    best = best_of_history(read_history(history_path), monitor)[0] if initial_epoch else math.inf

    train_iter = iter(_distribute(strategy, train_ds))
    val_iter = iter(_distribute(strategy, val_ds))
    writer = tf.summary.create_file_writer(fileio.join(run_dir, "tensorboard")) if chief else None
    joint = getattr(model, "joint_weight", None)
    history, images, train_seconds = [], 0, 0.0
    progbar_target = steps_per_epoch
    for epoch in range(initial_epoch, epochs):
        if joint is not None:
            joint.assign(0.0 if epoch < joint_warmup_epochs else 1.0)
        print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        bar = keras.utils.Progbar(progbar_target, verbose=1 if chief else 0)
        start = time.perf_counter()
        loss_sum = count = 0.0
        for step in range(steps_per_epoch):
            s, n = distributed_train(next(train_iter))
            loss_sum, count = loss_sum + float(s), count + float(n)
            bar.update(step + 1, [("loss", float(s) / max(float(n), 1.0))])
        seconds = time.perf_counter() - start
        images += int(count)
        train_seconds += seconds
        vl = vn = vs = vc = 0.0
        for _ in range(val_steps):
            a, b, c, d = distributed_val(next(val_iter))
            vl, vn, vs, vc = vl + float(a), vn + float(b), vs + float(c), vc + float(d)
        logs = {"epoch": epoch, "loss": loss_sum / max(count, 1.0), "val_loss": vl / max(vn, 1.0),
                "val_smape": vs / max(vc, 1.0), "epoch_seconds": seconds, "images_per_s": count / max(seconds, 1e-9),
                "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate))}
        history.append(logs)
        print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items() if k != "epoch"), flush=True)
        if chief:
            _append_csv(history_path, logs)
            with writer.as_default(step=epoch):
                for k, v in logs.items():
                    if k != "epoch":
                        tf.summary.scalar(k, v)
            writer.flush()
            current = logs.get(monitor, math.nan)
            if not select_best or (math.isfinite(current) and current < best):
                best = current
                _save_atomic(model, fileio.join(run_dir, "model.keras"))
            _save_atomic(model, fileio.join(run_dir, "last.keras"))
            write_state(model, backup_dir, epoch + 1)
    if chief:
        fileio.rmtree(backup_dir, ignore_errors=True)
    return {"initial_epoch": initial_epoch, "epochs_run": epochs - initial_epoch, "images": images,
            "train_seconds": train_seconds, "history": history}


def _save_atomic(model: keras.Model, path: str) -> None:
    tmp = fileio.incoming_path(path)
    model.save(tmp)  # keras.saving writes URLs through gfile
    fileio.replace(tmp, path)


def _append_csv(path: str, logs: dict) -> None:
    """Append one row (a header first when the file is new); the file is rewritten whole, atomically."""
    old = fileio.read_text(path) if fileio.exists(path) else ""
    out = io.StringIO(newline="")
    w = csv.DictWriter(out, fieldnames=list(logs))
    if not old:
        w.writeheader()
    w.writerow(logs)
    fileio.write_atomic(path, old + out.getvalue())
