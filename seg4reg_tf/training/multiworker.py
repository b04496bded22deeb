"""Custom training loop for `MultiWorkerMirroredStrategy` (Keras 3 `fit` fails under it: keras-team/keras#20585).

`strategy.run` inside a `tf.function`; the model's own `compute_loss` gives the loss; gradients are
all-reduced (summed) by the optimizer, so each replica's loss is scaled to `local_batch / global_batch`
of its mean. Only the chief writes files (history.csv, model.keras best by `monitor`, last.keras through the
callbacks `model.fit` uses; tensorboard/; backup/ via `backup.write_state`); every worker reads
the backup on start (`backup.restore_state`) so a restarted job resumes, even after a torn save.
"""
from __future__ import annotations

import math
import time

import keras
import tensorflow as tf

from seg4reg_tf import fileio
from seg4reg_tf.models.metrics import smape_per_image_ops
from seg4reg_tf.training.backup import restore_state, write_state
from seg4reg_tf.training.callbacks import AtomicCSVLogger, AtomicModelCheckpoint, best_of_history, read_history
from seg4reg_tf.training.joint_warmup import JointWarmup
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
    backup_dir = fileio.join(run_dir, "backup")
    train_step, val_step = _distributed_steps(strategy, model, global_batch, angles_key)
    with strategy.scope():  # resume: the weights file holds the optimizer's variables, its iteration count too
        model.optimizer.build(model.trainable_variables)
        initial_epoch = restore_state(model, backup_dir) if fileio.isdir(backup_dir) else 0
    files = _ChiefFiles(model, run_dir, monitor, select_best, initial_epoch) if chief else None
    train_iter = iter(_distribute(strategy, train_ds))
    val_iter = iter(_distribute(strategy, val_ds))
    history, images, train_seconds = [], 0, 0.0
    warmup = JointWarmup(joint_warmup_epochs)
    for epoch in range(initial_epoch, epochs):
        warmup.set_phase(model, epoch)
        print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        bar = keras.utils.Progbar(steps_per_epoch, verbose=1 if chief else 0)
        start = time.perf_counter()
        loss_sum = count = 0.0
        for step in range(steps_per_epoch):
            s, n = train_step(next(train_iter))
            loss_sum, count = loss_sum + float(s), count + float(n)
            bar.update(step + 1, [("loss", float(s) / max(float(n), 1.0))])
        seconds = time.perf_counter() - start
        images += int(count)
        train_seconds += seconds
        vl = vn = vs = vc = 0.0
        for _ in range(val_steps):
            a, b, c, d = val_step(next(val_iter))
            vl, vn, vs, vc = vl + float(a), vn + float(b), vs + float(c), vc + float(d)
        logs = {"loss": loss_sum / max(count, 1.0), "val_loss": vl / max(vn, 1.0), "val_smape": vs / max(vc, 1.0),
                "epoch_seconds": seconds, "images_per_s": count / max(seconds, 1e-9),
                "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))}
        history.append({"epoch": epoch, **logs})
        print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        if files is not None:
            files.write_epoch(epoch, logs)
            write_state(model, backup_dir, epoch + 1)
    if chief:
        fileio.rmtree(backup_dir, ignore_errors=True)
    return {"initial_epoch": initial_epoch, "epochs_run": epochs - initial_epoch, "images": images,
            "train_seconds": train_seconds, "history": history}


def _distributed_steps(strategy, model: keras.Model, global_batch: int, angles_key: str):
    """(train step, validation step): `tf.function`s over one distributed batch, their per-replica sums
    reduced. Train: (loss sum, images); validation: (loss sum, images, SMAPE sum, images)."""

    def train_step(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            mean = _replica_loss_mean(model.compute_loss(x=x, y=y, y_pred=y_pred, training=True), strategy)
            local = tf.cast(tf.shape(x["image"])[0], mean.dtype)
            scaled = mean * local / tf.cast(global_batch, mean.dtype)  # sum over replicas = global mean
        grads = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return mean * local, local

    def val_step(x, y):
        y_pred = model(x, training=False)
        mean = _replica_loss_mean(model.compute_loss(x=x, y=y, y_pred=y_pred, training=False), strategy)
        local = tf.cast(tf.shape(x["image"])[0], mean.dtype)
        smape = smape_per_image_ops(y["angles"], y_pred[angles_key])
        return mean * local, local, tf.reduce_sum(smape), tf.cast(tf.shape(smape)[0], tf.float64)

    def reduced(step):
        @tf.function
        def run(batch):
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                    for v in strategy.run(step, args=batch)]

        return run

    return reduced(train_step), reduced(val_step)


class _ChiefFiles:
    """What the chief writes after each epoch, through the callbacks `model.fit` uses (`training.callbacks`):
    history.csv, model.keras (best by `monitor`), last.keras and tensorboard/."""

    def __init__(self, model: keras.Model, run_dir: str, monitor: str, select_best: bool, initial_epoch: int):
        history_path = fileio.join(run_dir, "history.csv")
        if not initial_epoch:
            fileio.remove(history_path, missing_ok=True)
        best = AtomicModelCheckpoint(fileio.join(run_dir, "model.keras"), monitor=monitor, mode="min",
                                     save_best_only=select_best)
        best.best = best_of_history(read_history(history_path), monitor)[0] if initial_epoch else math.inf
        self.callbacks = [best, AtomicModelCheckpoint(fileio.join(run_dir, "last.keras")),
                          AtomicCSVLogger(history_path, append=True)]
        for callback in self.callbacks:
            callback.set_model(model)
            callback.on_train_begin()
        self.writer = tf.summary.create_file_writer(fileio.join(run_dir, "tensorboard"))

    def write_epoch(self, epoch: int, logs: dict) -> None:
        with self.writer.as_default(step=epoch):
            for k, v in logs.items():
                tf.summary.scalar(k, v)
        self.writer.flush()
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)
