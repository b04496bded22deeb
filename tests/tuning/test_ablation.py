"""benchmarks/ablation.py end to end on a tiny synthetic set: 2 variants x 1 seed x 1 epoch, then resume."""
from __future__ import annotations

import csv
import json
import os

import pytest

from tests.fixtures import load_benchmark

TINY_SETS = ["data.image_size=[64,32]", "data.clahe=false", "data.batch_size=4", "data.shuffle_buffer=16",
             "model.reg_width=4", "model.reg_depth=3", "model.seg_width=4", "model.seg_depth=2",
             "model.joint_warmup_epochs=0"]


def _ablation():
    return load_benchmark("ablation")


def _argv(tiny_data, out, *extra):
    sets = [a for s in TINY_SETS for a in ("--set", s)]
    return ["--data", tiny_data, "--out", str(out), "--variants", "reg_only", "seg4reg_plus", "--seeds", "0",
            "--epochs", "1", "--verbose", "0", *sets, *extra]


@pytest.mark.slow
def test_ablation_two_variants_then_resume(tmp_path, tiny_data, capsys):
    abl = _ablation()
    out = tmp_path / "abl"
    assert abl.main(_argv(tiny_data, out)) == 0
    with open(out / "ablation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["seed"]) for r in rows] == [("reg_only", "0"), ("seg4reg_plus", "0")]
    for r in rows:
        report = json.load(open(out / r["variant"] / "seed0" / "eval" / "report.json"))
        assert float(r["val_smape"]) == pytest.approx(report["smape"])
        assert report["n_images"] == 2  # the fixed validation split of 10 images: indices 4 and 9
        cfg = abl.run_config(abl.parse_args(_argv(tiny_data, out)), r["variant"], 0)
        assert cfg.data.image_size == (64, 32) and cfg.train.epochs == 1 and cfg.train.seed == 0
    assert rows[0]["dice"] == "" and rows[1]["dice"] != ""  # reg_only has no segmentation
    md = (out / "ablation.md").read_text()
    smape0 = float(rows[0]["val_smape"])
    assert f"| reg_only | {smape0:.2f} |" in md and "| seg4reg_plus |" in md

    # again: nothing is retrained or re-evaluated
    report_path = out / "reg_only" / "seed0" / "eval" / "report.json"
    mtime = os.path.getmtime(report_path)
    capsys.readouterr()
    assert abl.main(_argv(tiny_data, out)) == 0
    assert capsys.readouterr().out.count("trained already") == 2
    assert os.path.getmtime(report_path) == mtime

    # another seed of one variant joins the table beside the earlier runs
    argv = _argv(tiny_data, out)
    argv[argv.index("--variants"):argv.index("--epochs")] = ["--variants", "reg_only", "--seeds", "1"]
    assert abl.main(argv) == 0
    with open(out / "ablation.csv", newline="") as f:
        assert sorted(r["seed"] for r in csv.DictReader(f)) == ["0", "1"]
    assert "| reg_only |" in (out / "ablation.md").read_text() and " ± " in (out / "ablation.md").read_text()

    # a different budget into the same directory is refused, naming the run
    assert abl.main(_argv(tiny_data, out, "--set", "train.learning_rate=0.01")) == 2
    assert "different config" in capsys.readouterr().err


def test_ablation_bad_override_is_named(tmp_path, tiny_data, capsys):
    abl = _ablation()
    assert abl.main(_argv(tiny_data, tmp_path / "x", "--set", "model.bogus=1")) == 2
    assert "model.bogus" in capsys.readouterr().err
    assert abl.main(_argv(tiny_data, tmp_path / "x", "--variants", "nope")) == 2
    assert "nope" in capsys.readouterr().err
