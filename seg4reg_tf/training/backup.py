"""BackupAndRestore that a kill at any instant cannot make unresumable.

Layout of `RUN/backup/` (Keras' names, so an older backup still restores):
`latest.weights.h5` + `training_metadata.json` (the newest state) and `previous.weights.h5` +
`previous_training_metadata.json` (the one before).
Each state is written to a temporary file and renamed into place (atomic on POSIX; any TensorFlow
filesystem through `seg4reg_tf.fileio`), and its metadata
records the weights' size and CRC-32, so a torn or mismatched pair is recognised. On restore the
newest intact (metadata, weights) pair wins; an unreadable one is skipped with a warning naming the
file, and when none is usable the run starts over from epoch 1 with a warning: never a dead end.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import zlib

import keras

from seg4reg_tf import fileio

log = logging.getLogger(__name__)

WEIGHTS = "latest.weights.h5"
METADATA = "training_metadata.json"
PREV_WEIGHTS = "previous.weights.h5"  # Keras loads only names ending in .weights.h5
PREV_METADATA = "previous_" + METADATA
_TMP_WEIGHTS = "incoming.weights.h5"  # Keras insists on the .weights.h5 suffix
_TMP_METADATA = METADATA + ".tmp"


@dataclasses.dataclass(frozen=True)
class BackupState:
    """One restorable state: `epochs_done` finished epochs, weights at `weights_path`."""

    epochs_done: int
    weights_path: str
    metadata_path: str


def _crc32(path: str) -> int:
    crc = 0
    with fileio.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(chunk, crc)
    return crc


def _read_metadata(path: str) -> dict | None:
    try:
        meta = json.loads(fileio.read_text(path))
        if not isinstance(meta, dict) or not isinstance(meta.get("epoch"), int) or meta["epoch"] < 0:
            raise ValueError("no non-negative integer 'epoch'")
        return meta
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("backup: %s is unreadable (%s); ignoring it", path, err)
        return None


def _matches(meta: dict, weights: str) -> bool:
    if not fileio.isfile(weights):
        return False
    if "weights_crc32" not in meta:  # written by plain keras.callbacks.BackupAndRestore: trust the pair
        return fileio.getsize(weights) > 0
    return fileio.getsize(weights) == meta.get("weights_bytes") and _crc32(weights) == meta["weights_crc32"]


def find_states(backup_dir: str) -> list[BackupState]:
    """Intact states in `backup_dir`, newest first (a metadata file with the weights it describes).

    Pairs are matched by checksum, so a kill between the renames of one save still finds a state.
    Broken files are reported with a warning naming them; [] when nothing is usable.
    """
    weights = [fileio.join(backup_dir, WEIGHTS), fileio.join(backup_dir, PREV_WEIGHTS)]
    metas = [fileio.join(backup_dir, METADATA), fileio.join(backup_dir, PREV_METADATA)]
    found = []
    for meta_path in metas:
        meta = _read_metadata(meta_path)
        if meta is None:
            continue
        own = weights[metas.index(meta_path)]
        candidates = [own] + [w for w in weights if w != own] if "weights_crc32" in meta else [own]
        match = next((w for w in candidates if _matches(meta, w)), None)
        if match is None:
            log.warning("backup: %s describes epoch %d but no intact weights file matches it (torn write?); "
                        "ignoring it", meta_path, meta["epoch"])
            continue
        found.append(BackupState(meta["epoch"], match, meta_path))
    found.sort(key=lambda s: -s.epochs_done)
    return found


def write_state(model: keras.Model, backup_dir: str, epochs_done: int) -> None:
    """Save `model`'s weights (with the optimizer's) as the newest state; the old newest becomes previous."""
    fileio.makedirs(backup_dir)
    tmp_w, tmp_m = fileio.join(backup_dir, _TMP_WEIGHTS), fileio.join(backup_dir, _TMP_METADATA)
    w, m = fileio.join(backup_dir, WEIGHTS), fileio.join(backup_dir, METADATA)
    with fileio.staged(w, tmp_w, tmp_m):
        model.save_weights(tmp_w, overwrite=True)  # keras.saving writes URLs through gfile
        meta = {"epoch": int(epochs_done), "batch": 0, "weights_bytes": fileio.getsize(tmp_w),
                "weights_crc32": _crc32(tmp_w)}
        with fileio.open(tmp_m, "w") as f:
            f.write(json.dumps(meta))
    if fileio.isfile(w) and fileio.isfile(m):
        fileio.replace(w, fileio.join(backup_dir, PREV_WEIGHTS))
        fileio.replace(m, fileio.join(backup_dir, PREV_METADATA))
    fileio.replace(tmp_w, w)
    fileio.replace(tmp_m, m)


def restore_state(model: keras.Model, backup_dir: str) -> int:
    """Load the newest loadable state into `model` (and its optimizer); returns its finished epochs.

    0 when the directory is absent or empty. When files exist but none loads, warns naming the
    directory, deletes it and returns 0 (the run starts over).
    """
    if not fileio.isdir(backup_dir) or not fileio.listdir(backup_dir):
        return 0
    for state in find_states(backup_dir):
        try:
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.load_weights(state.weights_path)
        except Exception as err:  # noqa: BLE001 - an unreadable backup must not stop training
            log.warning("backup: cannot load %s (%s: %s); trying an older state",
                        state.weights_path, type(err).__name__, str(err).splitlines()[0][:300])
            continue
        if os.path.basename(state.metadata_path) == PREV_METADATA:
            log.warning("backup: the newest state in %s is torn; resumed from the previous one (after epoch %d)",
                        backup_dir, state.epochs_done)
        return state.epochs_done
    log.warning("backup: no usable state in %s (files: %s); starting the run over from epoch 1",
                backup_dir, ", ".join(fileio.listdir(backup_dir)))
    fileio.rmtree(backup_dir, ignore_errors=True)
    return 0


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore(backup_dir)` (per-epoch saves, deleted when training ends)
    with atomic writes, a previous copy and the fallback restore of this module."""

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=True)

    def on_train_begin(self, logs=None):
        epochs_done = restore_state(self.model, self.backup_dir)
        if epochs_done:
            self.model._initial_epoch = epochs_done  # what Keras' own callback sets

    def _save_model(self):
        write_state(self.model, self.backup_dir, self._current_epoch)
