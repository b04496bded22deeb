"""End-to-end `train` on a tiny synthetic set: run files, BackupAndRestore resume, load_run, the CLI."""
from __future__ import annotations

import errno
import json
import os

import keras
import numpy as np
import pytest

from seg4reg_tf.training.callbacks import read_history
from seg4reg_tf.training.run import load_run
from seg4reg_tf.training.train import train


class _Crash(keras.callbacks.Callback):
    """Raises at the end of epoch `after` (after the standard callbacks wrote it)."""

    def __init__(self, after):
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.after:
            raise RuntimeError("simulated crash")


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)


@pytest.mark.slow
def test_train_writes_run_and_resumes_after_crash(tmp_path, tiny_data, tiny_cfg):
    cfg = tiny_cfg(["model.variant=reg_only"])
    run = str(tmp_path / "run")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tiny_data, run, extra_callbacks=[_Crash(0)], verbose=0)
    assert [r["epoch"] for r in read_history(os.path.join(run, "history.csv"))] == [0]
    assert os.listdir(os.path.join(run, "backup")), "BackupAndRestore wrote nothing for the finished epoch"

    seen = _Epochs()
    summary = train(cfg, tiny_data, run, extra_callbacks=[seen], verbose=0)
    assert seen.seen == [1], "the restarted run must continue at epoch 2 (index 1) only"
    rows = read_history(os.path.join(run, "history.csv"))
    assert [r["epoch"] for r in rows] == [0, 1]
    for name in ("config.yaml", "model.keras", "last.keras", "history.csv", "tensorboard", "train_summary.json"):
        assert os.path.exists(os.path.join(run, name)), name
    assert not os.path.exists(os.path.join(run, "backup")), "backup is removed when the run completes"
    assert "val_smape" in rows[0] and "images_per_s" in rows[0]

    on_disk = json.load(open(os.path.join(run, "train_summary.json")))
    assert on_disk["initial_epoch"] == 1 and on_disk["epochs_run"] == 1 and on_disk["epochs_in_history"] == 2
    assert on_disk["best_val_smape"] == pytest.approx(min(r["val_smape"] for r in rows))
    assert on_disk["best_epoch"] == min(rows, key=lambda r: r["val_smape"])["epoch"] + 1  # 1-based
    assert on_disk["global_batch"] == 4 and on_disk["n_train"] == 8 and on_disk["n_val"] == 2
    assert on_disk["images_per_s"] > 0 and on_disk == {**summary, **on_disk}

    loaded_cfg, model = load_run(run)
    assert loaded_cfg == cfg
    out = model({"image": np.zeros((1, 64, 32, 1), "float32")})
    assert tuple(out["cobb_angles"].shape) == (1, 3)

    # a fresh run in the same directory (no backup) starts its history afresh
    summary2 = train(cfg, tiny_data, run, verbose=0)
    assert [r["epoch"] for r in read_history(os.path.join(run, "history.csv"))] == [0, 1]
    assert summary2["initial_epoch"] == 0


class _WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [w.numpy().copy() for w in self.model.weights]


def test_init_weights_start_training_from_a_model_at_another_input_size(tmp_path, tiny_data, tiny_cfg):
    from seg4reg_tf.models import build_model
    from seg4reg_tf.training.config import ConfigError

    source_cfg = tiny_cfg()
    source = build_model(source_cfg.model, source_cfg.data.image_size)
    source({"image": np.zeros((1, *source_cfg.data.image_size, 1), "float32")})
    rng = np.random.default_rng(0)
    for w in source.weights:  # weights no fresh model has
        w.assign(rng.normal(size=w.shape).astype(w.dtype) * 0.01)
    source_path = str(tmp_path / "source.keras")
    source.save(source_path)

    start = _WeightsAtStart()
    cfg = tiny_cfg(["train.epochs=1", "data.image_size=[128, 64]", f"train.init_weights={source_path}"])
    train(cfg, tiny_data, str(tmp_path / "run"), extra_callbacks=[start], verbose=0)
    assert len(start.weights) == len(source.weights)
    for got, want in zip(start.weights, source.weights):
        np.testing.assert_array_equal(got, want.numpy())

    run = str(tmp_path / "run2")
    other = tiny_cfg(["train.epochs=1", "model.seg_width=8", f"train.init_weights={source_path}"])
    with pytest.raises(ConfigError, match=r"train.init_weights: variable .* has shape .*source.keras"):
        train(other, tiny_data, run, verbose=0)
    missing = tiny_cfg([f"train.init_weights={tmp_path / 'nope'}"])
    with pytest.raises(FileNotFoundError, match="train.init_weights: .*nope.* does not exist"):
        train(missing, tiny_data, str(tmp_path / "run3"), verbose=0)
    assert not os.path.exists(tmp_path / "run3" / "config.yaml"), "nothing written for a missing init_weights"
    with pytest.raises(FileNotFoundError, match="directory without model.keras"):
        train(tiny_cfg([f"train.init_weights={tmp_path}"]), tiny_data, str(tmp_path / "run4"), verbose=0)


def test_load_run_names_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory not found"):
        load_run(str(tmp_path / "nope"))
    (tmp_path / "config.yaml").write_text("name: x\n")
    with pytest.raises(FileNotFoundError, match="model.keras: missing"):
        load_run(str(tmp_path))
    os.remove(tmp_path / "config.yaml")
    with pytest.raises(FileNotFoundError, match="config.yaml: missing"):
        load_run(str(tmp_path))


def test_optimizer_and_schedule_follow_config(tiny_cfg):
    from seg4reg_tf.training.schedules import EpochSchedule
    from seg4reg_tf.training.train import make_optimizer

    cfg = tiny_cfg(["train.optimizer=sgd", "train.learning_rate=0.01", "train.momentum=0.9",
                    "train.weight_decay=1e-4", "train.schedule=step", "train.step_epochs=30",
                    "train.step_factor=0.1", "train.epochs=90", "train.clipnorm=1"]).train
    opt = make_optimizer(cfg, steps_per_epoch=10)
    assert isinstance(opt, keras.optimizers.SGD)
    assert (opt.momentum, opt.weight_decay, opt.clipnorm) == pytest.approx((0.9, 1e-4, 1.0))
    lr = opt._learning_rate
    # hand values: epoch 0 -> 0.01, epoch 29.9 -> 0.01, epoch 30 -> 0.001, epoch 65 -> 0.0001
    got = [float(lr(s)) for s in (0, 299, 300, 650)]
    assert got == pytest.approx([0.01, 0.01, 0.001, 0.0001], rel=1e-5)
    cos = EpochSchedule(1.0, "cosine", steps_per_epoch=2, epochs=5, warmup_epochs=1)
    # warmup: (step+1)/(1*2); then 0.5 * (1 + cos(pi * (e - 1) / 4))
    assert [float(cos(s)) for s in (0, 1, 2, 6, 10)] == pytest.approx(
        [0.5, 1.0, 1.0, 0.5 * (1 + np.cos(np.pi * 2 / 4)), 0.0], abs=1e-6)
    assert isinstance(make_optimizer(tiny_cfg(["train.optimizer=adamw", "train.weight_decay=0.01"]).train, 3),
                      keras.optimizers.AdamW)
    restored = EpochSchedule.from_config(cos.get_config())
    assert float(restored(6)) == pytest.approx(float(cos(6)))


def _cli(argv):
    from seg4reg_tf.cli import main
    return main(argv)


def test_cli_errors_exit_2_naming_the_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: c\ntrain:\n  epochs: 2\n")
    assert _cli(["train", "--config", str(cfg), "--data", str(tmp_path), "--set", "train.epoch=1"]) == 2
    err = capsys.readouterr().err
    assert "train.epoch: unknown key" in err and "Traceback" not in err
    assert _cli(["train", "--config", str(cfg), "--set", "train.optimizer=rmsprop"]) == 2
    assert "train.optimizer: expected one of 'sgd', 'adam', 'adamw'" in capsys.readouterr().err
    assert _cli(["train", "--config", str(cfg)]) == 2
    assert "--data ROOT is required" in capsys.readouterr().err
    assert _cli(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_full_disk_during_a_checkpoint_names_the_file_and_the_size(tmp_path, tiny_data, tiny_cfg, small_disk,
                                                                     capsys):
    """Issue 29: a run directory on a disk that fills up during the first checkpoint gives a short error
    naming what was being written and how much a checkpoint needs, no TensorFlow trace (library and CLI)."""
    from seg4reg_tf.cli import main
    from seg4reg_tf.fileio import NoSpaceError

    cfg = tiny_cfg(["train.epochs=1"])
    run = small_disk(192) / "run"  # config and logs fit; the first checkpoint (model.keras, > 190 KiB) does not
    with pytest.raises(NoSpaceError) as info:
        train(cfg, tiny_data, str(run), verbose=0)
    msg = str(info.value)
    assert msg.startswith(f"no space left on device while writing {run / 'model.keras'} (at least "), msg
    assert "MB needed" in msg
    assert "function_node" not in msg and "Traceback" not in msg
    assert info.value.errno == errno.ENOSPC
    assert not [p for p in run.iterdir() if p.name.startswith(".incoming")]  # no half checkpoint left

    config = tmp_path / "cfg.yaml"
    from seg4reg_tf.training.config import save_config
    save_config(cfg, str(config))
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--data", tiny_data, "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"seg4reg train: no space left on device while writing {run}" in err and "Traceback" not in err


def test_a_refit_keeps_its_last_epoch_not_the_best_one(tmp_path):
    from seg4reg_tf.training.callbacks import make_callbacks

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    for select_best, want in ((True, 1.0), (False, 2.0)):
        run = str(tmp_path / f"select_{select_best}")
        os.makedirs(run)
        checkpoint = make_callbacks(run, monitor="val_smape", joint_warmup_epochs=0, global_batch=1,
                                    select_best=select_best)[2]
        checkpoint.set_model(model)
        for epoch, (value, smape) in enumerate(((1.0, 5.0), (2.0, 9.0))):  # the last epoch validates worse
            model.layers[0].kernel.assign(np.full((2, 1), value, "float32"))
            checkpoint.on_epoch_end(epoch, {"val_smape": smape})
        saved = keras.saving.load_model(os.path.join(run, "model.keras"))
        np.testing.assert_array_equal(saved.layers[0].kernel.numpy(), np.full((2, 1), want, "float32"))


def test_train_fit_on_all_trains_on_every_image(tmp_path, tiny_data, capsys):
    import yaml

    from tests.fixtures import TINY_EXPERIMENT

    cfg = tmp_path / "refit.yaml"
    cfg.write_text(yaml.safe_dump(TINY_EXPERIMENT))
    run = tmp_path / "run"
    assert _cli(["train", "--config", str(cfg), "--data", tiny_data, "--out", str(run), "--set",
                 "model.variant=reg_only", "train.epochs=1", "train.fit_on=all"]) == 0
    assert "model.keras: the last epoch (val_smape" in capsys.readouterr().out
    summary = json.load(open(run / "train_summary.json"))
    assert (summary["n_train"], summary["n_val"]) == (10, 2)
    assert summary["model_keras"] == "last epoch (train.fit_on: all)" and "refit" in summary["train_data"]
