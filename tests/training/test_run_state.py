"""Issue 12 (2, 7): a run directory is one run; unfinished or inconsistent runs are refused by name."""
from __future__ import annotations

import json
import os

import pytest

from seg4reg_tf.training.run import RunStateError, check_can_train, require_finished, run_state
from seg4reg_tf.training.train import train


def _cli(argv):
    from seg4reg_tf.cli import main
    return main(argv)


@pytest.mark.slow
def test_finished_run_refuses_another_config_and_export_refuses_interrupted(tmp_path, tiny_data, tiny_cfg, capsys):
    from tests.training.test_train import _Crash

    cfg = tiny_cfg(["model.variant=reg_only", "train.epochs=1"])
    run = str(tmp_path / "run")
    summary = train(cfg, tiny_data, run, verbose=0)
    assert run_state(run).status == "finished"
    assert summary["best_epoch"] == 1, "epochs count from 1 in train_summary.json, as in the progress bar"
    on_disk = json.load(open(os.path.join(run, "train_summary.json")))
    assert len(on_disk["config_sha256"]) == 64

    other = tiny_cfg(["model.variant=reg_only", "train.epochs=1", "data.clahe=true"])
    with pytest.raises(RunStateError, match=r"data\.clahe: False -> True"):
        train(other, tiny_data, run, verbose=0)
    assert run_state(run).status == "finished", "a refused start changes nothing"
    check_can_train(cfg, run)  # the same config may train again

    # the CLI says so without a traceback, exit 2
    (tmp_path / "c.yaml").write_text(open(os.path.join(run, "config.yaml")).read())
    rc = _cli(["train", "--config", str(tmp_path / "c.yaml"), "--data", tiny_data, "--out", run,
               "--set", "data.clahe=true"])
    err = capsys.readouterr().err
    assert rc == 2 and "different config" in err and "Traceback" not in err

    # a run killed after its first epoch: interrupted, refused by evaluate --run and export
    run2 = str(tmp_path / "run2")
    with pytest.raises(RuntimeError):
        train(tiny_cfg(["model.variant=reg_only"]), tiny_data, run2, extra_callbacks=[_Crash(0)], verbose=0)
    assert run_state(run2).status == "unfinished"
    with pytest.raises(RunStateError, match="interrupted"):
        require_finished(run2)
    rc = _cli(["evaluate", "--run", run2, "--data", tiny_data, "--split", "training", "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and "interrupted" in err and "--allow-unfinished" in err
    assert _cli(["export", run2, "--out", str(tmp_path / "m"), "--version", "1"]) == 1
    assert "interrupted" in capsys.readouterr().err and not os.path.exists(tmp_path / "m" / "1")


def test_train_data_error_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("name: c\ntrain:\n  epochs: 1\n")
    empty = tmp_path / "data"
    empty.mkdir()
    rc = _cli(["train", "--config", str(tmp_path / "c.yaml"), "--data", str(empty), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and str(empty) in err


def test_a_field_added_later_keeps_an_older_run_finished(tmp_path):
    """An older package wrote config.yaml without a field added since (at its default): the run stays
    finished; a changed value still makes it inconsistent."""
    import yaml

    from seg4reg_tf.training.config import ExperimentConfig, save_config
    from seg4reg_tf.training.run import config_fingerprint

    run = tmp_path / "run"
    run.mkdir()
    save_config(ExperimentConfig(), str(run / "config.yaml"))
    written = yaml.safe_load((run / "config.yaml").read_text())
    del written["model"]["upright_check"]  # as a package without that field wrote it
    (run / "config.yaml").write_text(yaml.safe_dump(written))
    old_hash = __import__("hashlib").sha256(json.dumps(written, sort_keys=True, default=str).encode()).hexdigest()
    (run / "train_summary.json").write_text(json.dumps({"epochs": 1, "config_sha256": old_hash}))
    (run / "model.keras").write_text("")
    assert config_fingerprint(ExperimentConfig()) != old_hash, "the full resolved config has the new field"
    assert run_state(str(run)).status == "finished"

    written["train"]["epochs"] += 1
    (run / "config.yaml").write_text(yaml.safe_dump(written))
    assert run_state(str(run)).status == "inconsistent"


# A run's config.yaml written before model.warmup_epochs became model.joint_warmup_epochs, and the
# config_sha256 the code of that time computed for it (training.run.config_fingerprint, 2026-12-08)
FORMER_CONFIG = """\
data: {augment: {enabled: false}, batch_size: 4, clahe: false, image_size: [64, 32], shuffle_buffer: 16}
model: {encoder: light, reg_depth: 3, reg_width: 4, seg_depth: 2, seg_width: 4, variant: seg4reg_plus,
  warmup_epochs: 3}
name: tiny
train: {epochs: 2, learning_rate: 0.001, optimizer: adam, schedule: constant, seed: 0}
"""
FORMER_SHA256 = "0b164b2b0bc91b99df97c62a7e06ab5daf9ba8d9f5c7170e7c371a7c73eee7bf"


def test_a_run_written_under_a_former_key_name_keeps_its_fingerprint(tmp_path):
    import yaml

    from seg4reg_tf.training.config import load_config
    from seg4reg_tf.training.run import config_fingerprint

    path = tmp_path / "config.yaml"
    path.write_text(FORMER_CONFIG)
    with pytest.warns(DeprecationWarning, match=r"model\.warmup_epochs is read as model\.joint_warmup_epochs"):
        cfg = load_config(str(path))
    assert cfg.model.joint_warmup_epochs == 3 and cfg.train.warmup_epochs == 0  # the learning-rate ramp: its own
    assert config_fingerprint(cfg, yaml.safe_load(FORMER_CONFIG)) == FORMER_SHA256
    both = FORMER_CONFIG.replace("warmup_epochs: 3}", "warmup_epochs: 3, joint_warmup_epochs: 1}")
    path.write_text(both)
    with pytest.raises(ValueError, match=r"model\.warmup_epochs: the former name of model\.joint_warmup_epochs"):
        load_config(str(path))
