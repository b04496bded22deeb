"""`seg4reg tune`: search space -> typed config changes, a 2-trial search with resume, bad config keys, the GP."""
from __future__ import annotations

import copy
import csv
import os

import keras_tuner
import numpy as np
import pytest
import yaml

from seg4reg_tf.cli import main
from seg4reg_tf.config_machinery import save_config
from seg4reg_tf.training.config import config_from_dict, load_config
from seg4reg_tf.tuning.hypermodel import SearchSpace, Seg4RegHyperModel
from seg4reg_tf.tuning.search import load_space
from tests.tuning.conftest import TINY


def _hm(tiny_data, overrides=(), **space):
    return Seg4RegHyperModel(config_from_dict(TINY, list(overrides)), tiny_data, SearchSpace(**space))


def test_values_become_typed_config_changes(tiny_data):
    hm = _hm(tiny_data, image_sizes=((64, 32), (96, 48)), reg_widths=(4, 8), seg_widths=(4, 8))
    values = {"learning_rate": np.float64(3e-5), "schedule": "cosine", "lambda_att": 0.25, "lambda_tri": 1.5,
              "joint_warmup_epochs": 2, "reg_width": 8, "seg_width": 4, "image_size": "96x48",
              "augment_strength": 1.5, "tuner/epochs": 3}
    cfg = hm.config_for(values)
    assert cfg.train.learning_rate == 3e-5 and cfg.train.schedule == "cosine"
    assert cfg.model.lambda_att == 0.25 and cfg.model.lambda_tri == 1.5 and cfg.model.joint_warmup_epochs == 2
    assert cfg.model.reg_width == 8 and cfg.model.seg_width == 4
    assert cfg.data.image_size == (96, 48)
    a = cfg.data.augment  # base: rotation 4, translate 0.05, scale (0.9, 1.2); x 1.5
    assert a.rotation_deg == pytest.approx(6.0) and a.translate_frac == pytest.approx(0.075)
    assert a.scale_range == pytest.approx((0.85, 1.3))
    # untouched settings stay those of the base config
    assert cfg.data.batch_size == 4 and cfg.model.variant == "seg4reg_plus" and cfg.train.epochs == 1
    with pytest.raises(ValueError, match="'bogus'"):
        hm.config_for({"bogus": 1})
    assert hm.base == config_from_dict(TINY)  # the base config is not changed


def test_trial_config_has_python_types_and_is_checked(tiny_data, tmp_path):
    hm = _hm(tiny_data, image_sizes=((64, 32), (96, 48)))
    changes = hm.changes({"learning_rate": np.float64(0.002), "reg_width": np.int64(8), "image_size": "96x48"})
    assert changes == {"train.learning_rate": 0.002, "model.reg_width": 8, "data.image_size": (96, 48)}
    cfg = hm.config_for({"learning_rate": np.float64(0.002), "reg_width": np.int64(8), "schedule": np.str_("step")})
    assert type(cfg.train.learning_rate) is float and type(cfg.model.reg_width) is int
    assert type(cfg.train.schedule) is str
    save_config(cfg, tmp_path / "c.yaml")  # plain YAML: no numpy scalars left
    assert load_config(tmp_path / "c.yaml") == cfg
    with pytest.raises(ValueError, match=r"^model\.reg_width: expected a multiple of 4"):
        hm.config_for({"reg_width": 6})
    with pytest.raises(ValueError, match=r"^train\.schedule: expected one of 'constant', 'step', 'cosine'"):
        hm.config_for({"schedule": "linear"})
    with pytest.raises(ValueError, match=r"^train\.learning_rate: expected a positive float"):
        hm.config_for({"learning_rate": -1.0})


def test_declared_space_follows_variant(tiny_data):
    full = _hm(tiny_data, ["train.epochs=4"], image_sizes=((64, 32), (96, 48)), reg_widths=(4, 8),
               seg_widths=(4, 8))
    names = set(full.declare(keras_tuner.HyperParameters()))
    assert names == {"learning_rate", "schedule", "lambda_att", "lambda_tri", "joint_warmup_epochs", "reg_width",
                     "seg_width", "image_size", "augment_strength"}
    hp = keras_tuner.HyperParameters()
    full.declare(hp)
    assert hp.get("joint_warmup_epochs") <= 3  # capped at train.epochs - 1
    reg = _hm(tiny_data, ["model.variant=reg_only", "data.augment.enabled=false"],
              image_sizes=((64, 32), (96, 48)), reg_widths=(4,), seg_widths=(4, 8))
    assert set(reg.declare(keras_tuner.HyperParameters())) == {"learning_rate", "schedule", "image_size"}


def test_space_errors_name_the_setting(tiny_data):
    with pytest.raises(ValueError, match=r"space.image_sizes: 68x32"):
        _hm(tiny_data, image_sizes=((68, 32),))  # 68 is not divisible by 2**3
    with pytest.raises(ValueError, match=r"space.reg_widths: 6"):
        _hm(tiny_data, reg_widths=(6,))  # group norm needs multiples of 4
    with pytest.raises(ValueError, match=r"space.learning_rate"):
        SearchSpace(learning_rate=(0.0, 1e-3))
    with pytest.raises(ValueError, match=r"^space\.bogus: unknown key"):
        load_space(None, ["bogus=1"])
    with pytest.raises(ValueError, match=r"^space\.reg_widths\[1\]: expected an int"):
        SearchSpace(reg_widths=(4, "8"))


def test_space_file_and_space_set(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"reg_widths": [4, 8], "learning_rate": [1e-3, 1e-2]}))
    sp = load_space(str(path), ["image_sizes=[[64, 32]]", "schedules=null"])
    assert sp == SearchSpace(reg_widths=(4, 8), learning_rate=(1e-3, 1e-2), image_sizes=((64, 32),), schedules=None)


def _tune_args(tmp_path, tiny_data, out, *extra):
    cfg_path = tmp_path / "base.yaml"
    cfg = copy.deepcopy(TINY)
    cfg["model"]["variant"] = "reg_only"
    cfg_path.write_text(yaml.safe_dump(cfg))
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"image_sizes": [[64, 32], [96, 48]], "reg_widths": [4, 8]}))
    return ["tune", "--config", str(cfg_path), "--data", tiny_data, "--trials", "2", "--out", str(out),
            "--space", str(space), "--verbose", "0", *extra]


def _rows(out):
    with open(os.path.join(out, "results.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_tune_two_trials_best_config_and_resume(tmp_path, tiny_data, capsys):
    out = tmp_path / "search"
    assert main(_tune_args(tmp_path, tiny_data, out)) == 0
    printed = capsys.readouterr().out
    assert printed.count("[tune] trial") == 4, printed  # start + end line per trial

    rows = _rows(out)
    assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows)
    best = min(rows, key=lambda r: float(r["val_smape"]))
    cfg = load_config(out / "best_config.yaml")
    assert cfg.train.learning_rate == pytest.approx(float(best["learning_rate"]))
    assert cfg.train.schedule == best["schedule"]
    assert cfg.model.reg_width == int(best["reg_width"])
    assert "x".join(map(str, cfg.data.image_size)) == best["image_size"]
    assert cfg.data.augment.rotation_deg == pytest.approx(4.0 * float(best["augment_strength"]))
    assert cfg.model.variant == "reg_only" and cfg.train.epochs == 1 and cfg.name == "tiny_tuned"
    # each trial's config sits in its trial directory and reproduces its row
    for r in rows:
        tcfg = load_config(out / "search" / f"trial_{r['trial_id']}" / "config.yaml")
        assert tcfg.train.learning_rate == pytest.approx(float(r["learning_rate"]))

    # the same command again: resumes, runs no new trial
    seconds_before = (out / "trial_seconds.json").read_text()
    assert main(_tune_args(tmp_path, tiny_data, out)) == 0
    printed = capsys.readouterr().out
    assert "resuming" in printed and "starting" not in printed
    assert _rows(out) == rows
    assert (out / "trial_seconds.json").read_text() == seconds_before
    assert sorted(p.name for p in (out / "search").glob("trial_*")) == sorted(f"trial_{r['trial_id']}" for r in rows)

    # a different budget in the same directory is refused
    assert main(_tune_args(tmp_path, tiny_data, out, "--epochs", "2")) == 2
    assert "different config" in capsys.readouterr().err


def test_bad_config_key_is_named(tmp_path, tiny_data, capsys):
    assert main(_tune_args(tmp_path, tiny_data, tmp_path / "s", "--set", "model.bogus=1")) == 2
    err = capsys.readouterr().err
    assert "model.bogus" in err and "unknown key" in err
    assert main(_tune_args(tmp_path, tiny_data, tmp_path / "s", "--space-set", "widths=[4]")) == 2
    assert "space.widths" in capsys.readouterr().err
    assert not (tmp_path / "s" / "results.csv").exists()


@pytest.mark.slow
def test_search_runs_under_the_configs_mirrored_strategy(tmp_path, tiny_data):
    import json
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    p = subprocess.run([sys.executable, os.path.join(here, "_mirrored_search.py"), tiny_data, str(tmp_path / "s")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    seen = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("SEEN ")][-1][5:])
    assert seen["replicas"] == 2 and seen["completed"] == 1
    assert "Mirrored" in seen["variable_type"]  # the trial's model was built in the strategy's scope
