"""Checks of the pipeline's helpers, run with the side environment's Python by test_pipeline.py
(`.venv-tfx/bin/python tests/pipelines/side_checks.py`); prints "side checks passed"."""
import os
import tempfile

import numpy as np

from seg4reg_pipeline.cli import load_pipeline_config
from seg4reg_pipeline.components import bless_decision, numeric_versions, push, tree_fingerprint
from seg4reg_pipeline.example_gen import input_pattern, is_eval_index
from seg4reg_pipeline.staging import interleave, write_aasce_root


def check_fixed_split():
    from seg4reg_tf.data import aasce

    assert [i for i in range(15) if is_eval_index(i)] == [4, 9, 14]
    train = [{"filename": f"t{i}.png"} for i in range(8)]
    evals = [{"filename": f"e{i}.png"} for i in range(2)]
    order = interleave(train, evals)
    assert [e["filename"] for e in order][4::5] == ["e0.png", "e1.png"]
    for bad in ((train[:4], evals), (train + train[:2], evals[:1])):
        try:
            interleave(*bad)
        except ValueError as err:
            assert "not a fixed split" in str(err)
        else:
            raise AssertionError("interleave accepted a split that is not the fixed rule")
    # a staged root reads back with the package's reader, landmarks exactly (float64 p2)
    import cv2

    img = cv2.imencode(".png", np.zeros((100, 80), np.uint8))[1].tobytes()
    rng = np.random.default_rng(0)
    examples = [{"filename": f"x {i}.png", "image": img, "height": 100, "width": 80,
                 "landmarks": rng.uniform(0, 79, (68, 2)) + 0.25, "angles": np.array([30.5, 20.25, 10.0])}
                for i in range(10)]
    with tempfile.TemporaryDirectory() as tmp:
        write_aasce_root(examples, tmp)
        records = aasce.load_split(tmp, "training", progress=False)
        _, val = aasce.train_val_split(records)
        assert [r.filename for r in val] == ["x 4.png", "x 9.png"]
        assert np.array_equal(records[3].landmarks, examples[3]["landmarks"])
        assert np.array_equal(records[3].angles, examples[3]["angles"])
        assert input_pattern(tmp) == "*/training/*"
        try:
            input_pattern(os.path.join(tmp, "data"))
        except ValueError as err:
            assert "neither an AASCE-format root" in str(err)
        else:
            raise AssertionError("input_pattern accepted a directory with no data")


def check_blessing_rule():
    assert bless_decision(20.0, 30.0, None, 0.0) == []
    assert bless_decision(20.0, 30.0, 20.0, 0.0) == []
    assert "above the absolute threshold" in bless_decision(31.0, 30.0, None, 0.0)[0]
    assert "regresses" in bless_decision(21.0, 30.0, 20.0, 0.5)[0]
    assert bless_decision(20.4, 30.0, 20.0, 0.5) == []
    assert len(bless_decision(float("nan"), 30.0, 20.0, 0.0)) == 2  # NaN never blesses


def check_push():
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model")
        os.makedirs(os.path.join(model, "variables"))
        for name, data in (("saved_model.pb", b"graph"), ("variables/v", b"weights")):
            with open(os.path.join(model, name), "wb") as f:
                f.write(data)
        base = os.path.join(tmp, "serving")
        os.makedirs(os.path.join(base, "7"))  # an incomplete version (no saved_model.pb) still takes number 7
        assert push(model, base) == (8, True)
        assert push(model, base) == (8, False)  # the same model is not pushed twice
        with open(os.path.join(model, "variables", "v"), "wb") as f:
            f.write(b"other weights")
        assert push(model, base) == (9, True)
        assert sorted(os.listdir(base)) == ["7", "8", "9"]  # no staging directory left behind
        assert sorted(numeric_versions(base)) == [8, 9]
        assert tree_fingerprint(os.path.join(base, "9")) == tree_fingerprint(model)


def check_config():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "c.yaml")
        with open(path, "w") as f:
            f.write("name: c\ntrain: {epochs: 3}\npipeline: {bless_smape: 25}\n")
        text, section = load_pipeline_config(path, ["train.epochs=1", "pipeline.regression_tolerance=0.5"])
        assert "epochs: 1" in text and section == {"bless_smape": 25.0, "regression_tolerance": 0.5}
        for override, key in (("pipeline.bogus=1", "pipeline.bogus"), ("train.bogus=1", "train.bogus")):
            try:
                load_pipeline_config(path, [override])
            except ValueError as err:
                assert key in str(err), err
            else:
                raise AssertionError(f"{override} accepted")


if __name__ == "__main__":
    check_fixed_split()
    check_blessing_rule()
    check_push()
    check_config()
    print("side checks passed")
