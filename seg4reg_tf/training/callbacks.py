"""Training callbacks: throughput logging, atomic (resume-aware) checkpoints, and the standard set."""
from __future__ import annotations

import csv
import io
import math
import time

import keras

from seg4reg_tf import fileio


class Throughput(keras.callbacks.Callback):
    """Adds `epoch_seconds` (training part of the epoch, s) and `images_per_s` to the epoch logs.

    Put it first in the callback list so that CSVLogger and TensorBoard see the two values.
    Args: global_batch: images per step (all replicas).
    """

    def __init__(self, global_batch: int):
        super().__init__()
        self.global_batch = int(global_batch)
        self.total_images = 0
        self.total_seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._stop, self._steps = time.perf_counter(), None, 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_test_begin(self, logs=None):
        if getattr(self, "_start", None) is not None and self._stop is None:
            self._stop = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        stop = self._stop if self._stop is not None else time.perf_counter()
        seconds = max(stop - self._start, 1e-9)
        images = self._steps * self.global_batch
        self.total_images += images
        self.total_seconds += seconds
        if logs is not None:
            logs["epoch_seconds"] = seconds
            logs["images_per_s"] = images / seconds


def read_history(path: str) -> list[dict]:
    """Rows of a CSVLogger file as dicts of floats (the `epoch` column as int); [] if absent."""
    if not fileio.isfile(path):
        return []
    with io.StringIO(fileio.read_text(path), newline="") as f:
        rows = []
        for row in csv.DictReader(f):
            out = {}
            for k, v in row.items():
                try:
                    out[k] = int(v) if k == "epoch" else float(v)
                except (TypeError, ValueError):
                    out[k] = v
            rows.append(out)
    return rows


def best_of_history(rows: list[dict], monitor: str) -> tuple[float, int | None]:
    """(min value, its epoch) of `monitor` over history rows; (inf, None) when absent."""
    best, epoch = math.inf, None
    for row in rows:
        v = row.get(monitor)
        if isinstance(v, float) and math.isfinite(v) and v < best:
            best, epoch = v, row.get("epoch")
    return best, epoch


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` for one `.keras` file that is written to a temporary file and
    renamed into place, so a kill mid-save leaves the previous checkpoint intact (never a torn one)."""

    def _save_model(self, epoch, batch, logs):
        final, verbose = self.filepath, self.verbose
        tmp = fileio.incoming_path(final)  # any TensorFlow filesystem: keras.saving writes URLs through gfile
        if not tmp.endswith(".keras"):
            tmp += ".keras"
        self.filepath, self.verbose = tmp, 0
        try:
            with fileio.staged(final, tmp):
                super()._save_model(epoch, batch, logs)
        finally:
            self.filepath, self.verbose = final, verbose
        if fileio.exists(tmp):
            fileio.replace(tmp, final)
            if verbose:
                print(f"\nEpoch {epoch + 1}: saved {final}"
                      + (f" ({self.monitor} {self.best:.5g})" if self.save_best_only else ""), flush=True)


class AtomicCSVLogger(keras.callbacks.CSVLogger):
    """`keras.callbacks.CSVLogger` (same columns and format; `append` as there) that rewrites the whole file
    after each epoch through `fileio.write_atomic`: on any TensorFlow filesystem, never a torn row. (Keras'
    own keeps a file open, and in Keras 3.15 cannot close a non-local one: GFile has no `closed`.)"""

    def on_train_begin(self, logs=None):
        self._previous = fileio.read_text(self.filename) if self.append and fileio.exists(self.filename) else ""
        self.append_header = not self._previous
        self.csv_file = io.StringIO(newline="")  # this run's rows; Keras' on_epoch_end writes them here
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        fileio.write_atomic(self.filename, self._previous + self.csv_file.getvalue())

    def on_train_end(self, logs=None):
        self.csv_file, self.writer = None, None


def make_callbacks(run_dir: str, *, monitor: str, joint_warmup_epochs: int, global_batch: int,
                   resumed_best: float = math.inf, select_best: bool = True) -> list[keras.callbacks.Callback]:
    """The standard set, in order: Throughput, JointWarmup, best AtomicModelCheckpoint(RUN/model.keras,
    `monitor`, min; its `best` seeded with `resumed_best` so a resumed run keeps the better earlier
    model; every epoch when not `select_best`), AtomicModelCheckpoint(RUN/last.keras),
    AtomicCSVLogger(RUN/history.csv, append), TensorBoard(RUN/tensorboard), SafeBackupAndRestore(RUN/backup)
    last."""
    from seg4reg_tf.training.backup import SafeBackupAndRestore
    from seg4reg_tf.training.joint_warmup import JointWarmup

    best = AtomicModelCheckpoint(fileio.join(run_dir, "model.keras"), monitor=monitor, mode="min",
                                 save_best_only=select_best, verbose=1 if select_best else 0)
    best.best = resumed_best
    return [
        Throughput(global_batch),
        JointWarmup(joint_warmup_epochs),
        best,
        AtomicModelCheckpoint(fileio.join(run_dir, "last.keras")),
        AtomicCSVLogger(fileio.join(run_dir, "history.csv"), append=True),
        keras.callbacks.TensorBoard(fileio.join(run_dir, "tensorboard"), write_graph=False, profile_batch=0),
        # last: an epoch counts as done (and is skipped on resume) only after everything above wrote it
        SafeBackupAndRestore(fileio.join(run_dir, "backup")),
    ]
