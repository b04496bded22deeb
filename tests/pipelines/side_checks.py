"""Checks of the pipeline's helpers, run with the side environment's Python by test_pipeline.py
(`.venv-tfx/bin/python tests/pipelines/side_checks.py`); prints "side checks passed"."""
import os
import tempfile

from seg4reg_pipeline.cli import load_pipeline_config
from seg4reg_pipeline.components import bless_decision, numeric_versions, push, tree_fingerprint
from seg4reg_pipeline.example_gen import input_pattern, is_eval_index


def check_fixed_split():
    assert [i for i in range(15) if is_eval_index(i)] == [4, 9, 14]
    with tempfile.TemporaryDirectory() as tmp:
        from seg4reg_tf.data.synth import write_synthetic_dataset

        write_synthetic_dataset(tmp, 5, 0, 0, height_range=(100, 120), progress=False)
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
