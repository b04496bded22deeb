"""Issue 12 (1): a torn backup (a kill during the end-of-epoch save) never makes a run unresumable."""
from __future__ import annotations

import json
import logging
import os

import keras
import numpy as np
import pytest

from seg4reg_tf.training.backup import METADATA, PREV_WEIGHTS, WEIGHTS, find_states, restore_state, write_state


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    m.compile(keras.optimizers.Adam(), loss="mse")
    m.optimizer.build(m.trainable_variables)
    return m


def _set(model, value):
    for v in model.trainable_variables:
        v.assign(np.full(v.shape, value, "float32"))


def _value(model):
    return float(model.trainable_variables[0].numpy().flat[0])


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def _two_states(d):
    """Backups of epoch 1 (weights 1.0) then epoch 2 (weights 2.0) in `d`."""
    m = _model()
    for epoch in (1, 2):
        _set(m, float(epoch))
        write_state(m, d, epoch)


def test_truncated_latest_falls_back_to_previous_epoch(tmp_path, caplog):
    d = str(tmp_path / "backup")
    _two_states(d)
    _truncate(os.path.join(d, WEIGHTS), 4096)  # torn: a few KB of the newest weights
    fresh = _model(1)
    with caplog.at_level(logging.WARNING):
        assert restore_state(fresh, d) == 1
    assert _value(fresh) == 1.0  # the epoch-1 weights, not a mix
    assert METADATA in caplog.text and "torn" in caplog.text


def test_zero_byte_only_backup_starts_over_with_warning(tmp_path, caplog):
    d = str(tmp_path / "backup")
    m = _model()
    write_state(m, d, 1)
    _truncate(os.path.join(d, WEIGHTS), 0)
    with caplog.at_level(logging.WARNING):
        assert restore_state(_model(1), d) == 0
    assert "starting the run over" in caplog.text and d in caplog.text
    assert not os.path.exists(d)


def test_kill_between_renames_still_finds_the_newest_state(tmp_path):
    d = str(tmp_path / "backup")
    _two_states(d)
    # the state a kill leaves after the first rename of the next save: weights moved, metadata not
    os.replace(os.path.join(d, WEIGHTS), os.path.join(d, PREV_WEIGHTS))
    states = find_states(d)
    assert [s.epochs_done for s in states] == [2]
    fresh = _model(1)
    assert restore_state(fresh, d) == 2 and _value(fresh) == 2.0


def test_plain_keras_backup_still_restores(tmp_path):
    d = tmp_path / "backup"
    d.mkdir()
    m = _model()
    _set(m, 3.0)
    m.save_weights(str(d / WEIGHTS))
    (d / METADATA).write_text(json.dumps({"epoch": 4, "batch": 0}))
    fresh = _model(1)
    assert restore_state(fresh, str(d)) == 4 and _value(fresh) == 3.0


@pytest.mark.slow
def test_train_resumes_after_torn_backup(tmp_path, tiny_data, tiny_cfg, caplog):
    """End to end: crash after 2 of 3 epochs, tear the newest backup, rerun the same command."""
    from seg4reg_tf.training.callbacks import read_history
    from seg4reg_tf.training.train import train
    from tests.training.test_train import _Crash, _Epochs

    cfg = tiny_cfg(["model.variant=reg_only", "train.epochs=3"])
    run = str(tmp_path / "run")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tiny_data, run, extra_callbacks=[_Crash(1)], verbose=0)
    _truncate(os.path.join(run, "backup", WEIGHTS), 0)  # kill -9 during the epoch-2 backup
    seen = _Epochs()
    with caplog.at_level(logging.WARNING):
        summary = train(cfg, tiny_data, run, extra_callbacks=[seen], verbose=0)
    assert seen.seen == [1, 2], "resumes from the previous intact backup (after epoch 1)"
    assert [r["epoch"] for r in read_history(os.path.join(run, "history.csv"))] == [0, 1, 2]
    assert summary["initial_epoch"] == 1 and not os.path.exists(os.path.join(run, "backup"))
    assert "latest.weights.h5" in caplog.text or "training_metadata.json" in caplog.text
