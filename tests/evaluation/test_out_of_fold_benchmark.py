"""benchmarks/out_of_fold.py and evaluation.out_of_fold: each fold's model on the films it never saw, one
file grown a fold at a time, resumable, model outputs only."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml

from seg4reg_tf.evaluation.out_of_fold import COLUMNS, OUTPUTS, append_rows, fold_rows, folds_in, read_out_of_fold
from tests.fixtures import load_benchmark, tiny_experiment


def _outputs(n: int, offset: float = 0.0) -> dict:
    rng = np.random.default_rng(0)
    return {k: (rng.uniform(0, 60, (n, *shape)) + offset) if k != "end_vertebrae"
            else rng.integers(0, 17, (n, *shape)) for k, shape in OUTPUTS.items()}


def test_rows_round_trip_and_a_film_is_written_once(tmp_path):
    path = tmp_path / "oof.csv"
    out1, out0 = _outputs(2), _outputs(3, offset=100.0)
    del out1["upright_margin"]  # a model without the upright check: NaN there
    append_rows(path, fold_rows(out1, [1, 6], ["b.jpg", "g.jpg"], fold=1))
    append_rows(path, fold_rows(out0, [0, 5, 10], ["a.jpg", "f.jpg", "k.jpg"], fold=0))
    assert folds_in(path) == {0, 1}
    keys, back = read_out_of_fold(path)
    np.testing.assert_array_equal(keys["index"], [0, 1, 5, 6, 10])  # in the split's order
    np.testing.assert_array_equal(keys["fold"], [0, 1, 0, 1, 0])
    assert list(keys["filename"]) == ["a.jpg", "b.jpg", "f.jpg", "g.jpg", "k.jpg"]
    for k in OUTPUTS:
        if k == "upright_margin":
            assert np.isnan(back[k][[1, 3]]).all()
            np.testing.assert_allclose(back[k][[0, 2, 4]], out0[k], rtol=1e-5)
            continue
        np.testing.assert_allclose(back[k][[0, 2, 4]], out0[k], rtol=1e-5, err_msg=k)
        np.testing.assert_allclose(back[k][[1, 3]], out1[k], rtol=1e-5, err_msg=k)
    assert back["end_vertebrae"].dtype == np.int32 and back["end_vertebrae"].shape == (5, 3, 2)
    with pytest.raises(ValueError, match="g.jpg"):
        append_rows(path, fold_rows(out1, [1, 6], ["b2.jpg", "g.jpg"], fold=1))
    with pytest.raises(KeyError, match="vertebra_tilts"):
        fold_rows({k: v for k, v in out0.items() if k != "vertebra_tilts"}, [0, 5, 10], ["a", "f", "k"], 0)


@pytest.mark.slow
def test_each_fold_trains_exports_and_appends_its_held_out_films_and_a_rerun_resumes(tiny_data, tmp_path, capsys):
    bench = load_benchmark("out_of_fold")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_experiment({
        "data": {"batch_size": 2, "cache": False}, "model": {"geometry_head": True, "head": "fused",
                                                             "joint_warmup_epochs": 0},
        "train": {"epochs": 1, "steps_per_epoch": 1}})))
    out, runs = tmp_path / "oof.csv", tmp_path / "runs"
    argv = ["--config", str(cfg), "--data", tiny_data, "--runs", str(runs), "--out", str(out)]
    assert bench.main([*argv, "--folds", "3"]) == 0
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == COLUMNS and not any("true" in c or "label" in c for c in COLUMNS)
    assert [int(r["index"]) for r in rows] == [3, 8] and [int(r["fold"]) for r in rows] == [3, 3]
    assert "| fused answer (cobb_angles) |" in capsys.readouterr().out
    # each fold's model never saw its films: its run validated on exactly them
    assert yaml.safe_load((runs / "fold_3" / "config.yaml").read_text())["train"]["val_fold"] == 3
    # a second call with a fold already in the file does not train it again, and adds the new one
    mtime = (runs / "fold_3" / "model.keras").stat().st_mtime
    assert bench.main([*argv, "--folds", "3", "0"]) == 0
    captured = capsys.readouterr()
    assert (runs / "fold_3" / "model.keras").stat().st_mtime == mtime and "fold 3: already in" in captured.err
    assert folds_in(out) == {0, 3} and "| fold 0 | fold 3 |" in captured.out


def test_a_config_that_starts_from_trained_weights_is_refused(tiny_data, tmp_path, capsys):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump(tiny_experiment({"train": {"init_weights": "runs/v6"}})))
    with pytest.raises(SystemExit):
        load_benchmark("out_of_fold").main(["--config", str(cfg), "--data", tiny_data, "--runs", str(tmp_path),
                                            "--out", str(tmp_path / "o.csv")])
    assert "init_weights" in capsys.readouterr().err
