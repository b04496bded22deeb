import argparse
import json
import os

import numpy as np
import pytest
import scipy.io

from seg4reg_tf.evaluation import cli as eval_cli
from seg4reg_tf.geometry import cobb_angles
from tests.evaluation.test_evaluate import _save_fake_savedmodel
from tests.fixtures import write_spine_records


def _parser():
    parser = argparse.ArgumentParser(prog="seg4reg")
    eval_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(argv):
    args = _parser().parse_args(["evaluate", *argv])
    return args.func(args)


def _write_aasce_layout(root, split="training", n=5):
    """A tiny dataset in the AASCE layout (PNG images, .mat p2, the three CSVs)."""
    img_dir = os.path.join(root, "data", split)
    lab_dir = os.path.join(root, "labels", split)
    os.makedirs(lab_dir)
    recs = write_spine_records(img_dir, n=n)
    names, lms, angs = [], [], []
    for r in recs:
        p2 = np.round(r.landmarks).astype(np.uint16)
        scipy.io.savemat(os.path.join(lab_dir, r.filename + ".mat"), {"p2": p2})
        names.append(r.filename)
        p = p2.astype(np.float64)
        lms.append(np.concatenate([p[:, 0] / r.width, p[:, 1] / r.height]))
        angs.append(cobb_angles(p, r.height))
    with open(os.path.join(lab_dir, "filenames.csv"), "w", newline="") as f:
        f.write("".join(n_ + "\r\n" for n_ in names))
    np.savetxt(os.path.join(lab_dir, "landmarks.csv"), np.array(lms), fmt="%.5g", delimiter=",")
    np.savetxt(os.path.join(lab_dir, "angles.csv"), np.array(angs), fmt="%.5g", delimiter=",")
    return names, np.array(angs)


def test_requires_exactly_one_source(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["evaluate", "--data", "x", "--split", "t", "--out", "o"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["evaluate", "--run", "a", "--model", "b", "--data", "x", "--split", "t", "--out", "o"])


def test_missing_paths_give_clear_errors(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    assert _run(["--run", str(tmp_path / "nope"), "--data", str(data), "--split", "t",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--run" in err and "nope" in err and "Traceback" not in err

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("{}\n")
    assert _run(["--run", str(run), "--data", str(data), "--split", "t", "--out", str(tmp_path / "o")]) == 2
    assert "model.keras" in capsys.readouterr().err

    assert _run(["--model", str(tmp_path / "m"), "--data", str(data), "--split", "t",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--model" in capsys.readouterr().err

    model = tmp_path / "base"
    model.mkdir()
    assert _run(["--model", str(model), "--data", str(tmp_path / "nodata"), "--split", "t", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert "--data" in err and "nodata" in err

    # An empty base path: no version directory.
    assert _run(["--model", str(model), "--data", str(data), "--split", "t", "--out", str(tmp_path / "o")]) == 2
    assert "saved_model.pb" in capsys.readouterr().err

    # A split that does not exist: the data reader's error, no traceback.
    _save_fake_savedmodel(str(model / "1"), 10.0)
    assert _run(["--model", str(model), "--data", str(data), "--split", "test", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "test" in err and "Traceback" not in err


def test_evaluates_a_saved_model_on_the_val_subset(tmp_path, capsys):
    root = tmp_path / "ds"
    names, angles = _write_aasce_layout(str(root), n=10)
    base = tmp_path / "base"
    _save_fake_savedmodel(str(base / "3"), 10.0)
    out = tmp_path / "out"
    rc = _run(["--model", str(base), "--data", str(root), "--split", "training", "--val", "--out", str(out),
               "--batch-size", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "SMAPE" in text and "Dice n/a" in text
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_images"] == 2  # indices 4 and 9
    val = angles[[4, 9]]
    expected = np.mean([100 * np.sum(np.abs(10.0 - t)) / np.sum(10.0 + t) for t in val])
    assert rep["smape"] == pytest.approx(expected, abs=1e-3)  # angles.csv holds 5 significant digits
    assert rep["split"] == "training (val)"
    assert (out / "pred_vs_true.png").stat().st_size > 1000


def test_tta_is_for_run_directories_only(tmp_path, capsys):
    base = tmp_path / "base"
    _save_fake_savedmodel(str(base / "1"), 10.0)
    rc = _run(["--model", str(base), "--data", str(tmp_path), "--split", "training", "--out", str(tmp_path / "o"),
               "--tta", "flip"])
    assert rc == 2
    assert "--tta: applies to --run only" in capsys.readouterr().err
