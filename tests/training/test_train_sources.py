"""Issue 22 (4): `train()` reads any source: an AASCE root (its fixed split) or TFRecord patterns for the
training and the validation examples (GZIP as TFX's ExampleGen writes them); `seg4reg train
--train-files PATTERN --eval-files PATTERN` (aliases `--train-data`, `--val-data`, used below too). Bad sources
are refused before the run directory changes."""
from __future__ import annotations

import csv
import json
import os

import pytest
import tensorflow as tf
import yaml

from seg4reg_tf.data import aasce
from seg4reg_tf.data.sources import DataSourceError, training_splits
from seg4reg_tf.data.tfrecords import record_to_example
from tests.fixtures import tiny_experiment

ONE_STEP = {"train": {"epochs": 1, "steps_per_epoch": 1, "val_steps": 1}}


def _write(records, path, compression=None):
    with tf.io.TFRecordWriter(path, options=compression) as w:
        for r in records:
            w.write(record_to_example(r).SerializeToString())
    return path


@pytest.fixture(scope="module")
def tfrecord_splits(tiny_data, tmp_path_factory):
    """The fixed split of `tiny_data` as TFX lays it out: Split-train/ and Split-eval/ of GZIP `*.gz` files
    (train in two shards, records alternating), plus an uncompressed copy of the eval split."""
    out = tmp_path_factory.mktemp("examples")
    train, val = aasce.train_val_split(aasce.load_split(tiny_data, "training", progress=False))
    for d in ("Split-train", "Split-eval", "plain"):
        (out / d).mkdir()
    _write(train[0::2], str(out / "Split-train" / "data_tfrecord-00000-of-00002.gz"), "GZIP")
    _write(train[1::2], str(out / "Split-train" / "data_tfrecord-00001-of-00002.gz"), "GZIP")
    _write(val, str(out / "Split-eval" / "data_tfrecord-00000-of-00001.gz"), "GZIP")
    _write(val, str(out / "plain" / "eval.tfrecord"))
    return {"train": str(out / "Split-train" / "*"), "eval": str(out / "Split-eval" / "*"),
            "plain_eval": str(out / "plain" / "eval.tfrecord"), "dir": str(out), "n": (len(train), len(val))}


def test_splits_of_a_root_and_of_tfrecords(tiny_data, tfrecord_splits):
    train, val = training_splits(tiny_data)
    assert (train.count, val.count) == (8, 2) and train.records is not None and "fixed split" in train.origin
    train, val = training_splits(tfrecord_splits["train"], [tfrecord_splits["eval"], tfrecord_splits["plain_eval"]])
    assert (train.count, val.count) == (8, 4)
    assert len(train.files) == 2 and all(f.endswith(".gz") for f in train.files)
    assert tfrecord_splits["train"] in train.origin and "2 TFRecord files" in train.origin


def test_a_refit_trains_on_every_labelled_image_and_keeps_validating_on_the_fixed_split(tiny_data, tfrecord_splits):
    train, val = training_splits(tiny_data)
    every, same_val = training_splits(tiny_data, fit_on="all")
    assert (every.count, same_val.count) == (10, 2) and "refit" in every.origin and "also trained on" in same_val.origin
    names = sorted(r.image_path for r in every.records)
    assert names == sorted(r.image_path for r in train.records + val.records)
    assert [r.image_path for r in same_val.records] == [r.image_path for r in val.records]
    with pytest.raises(DataSourceError, match="train.fit_on"):
        training_splits(tfrecord_splits["train"], tfrecord_splits["eval"], fit_on="all")


def test_each_fold_of_a_root_holds_out_its_own_fifth(tiny_data, tfrecord_splits):
    """`train.val_fold` k validates on index % 5 == k: the five folds' validation images are disjoint and
    cover the split; fold 4 is the fixed split."""
    from seg4reg_tf.training.config import ConfigError, TrainConfig

    records = aasce.load_split(tiny_data, "training", progress=False)
    held_out = []
    for k in range(5):
        train, val = training_splits(tiny_data, val_fold=k)
        assert [r.image_path for r in val.records] == [r.image_path for i, r in enumerate(records) if i % 5 == k]
        assert not {r.image_path for r in val.records} & {r.image_path for r in train.records}
        assert ("fixed split" if k == 4 else f"fold {k} held out") in val.origin
        held_out += [r.image_path for r in val.records]
    assert sorted(held_out) == sorted(r.image_path for r in records)
    with pytest.raises(DataSourceError, match="train.val_fold"):
        training_splits(tfrecord_splits["train"], tfrecord_splits["eval"], val_fold=0)
    with pytest.raises(ValueError, match="fold"):
        aasce.train_val_split(records, 5)
    with pytest.raises(ConfigError, match="train.val_fold"):
        TrainConfig(val_fold=5)


def test_bad_sources_are_named(tiny_data, tfrecord_splits, tmp_path):
    with pytest.raises(DataSourceError, match="val_data"):
        training_splits(tfrecord_splits["train"])  # TFRecords need the validation examples too
    with pytest.raises(DataSourceError, match="is a directory"):
        training_splits(tfrecord_splits["train"], tiny_data)
    with pytest.raises(DataSourceError, match=r"val_data: no TFRecord files match .*nothing-\*"):
        training_splits(tfrecord_splits["train"], str(tmp_path / "nothing-*"))
    with pytest.raises(FileNotFoundError, match="not a directory"):
        training_splits(str(tmp_path / "no_root"))
    # a GZIP file under a name that says uncompressed, and a record without the angles feature
    misnamed = str(tmp_path / "misnamed.tfrecord")
    with open(misnamed, "wb") as f, open(tfrecord_splits["eval"].replace("*", "data_tfrecord-00000-of-00001.gz"),
                                         "rb") as g:
        f.write(g.read())
    with pytest.raises(DataSourceError, match=r"val_data: .*misnamed\.tfrecord: record 0 .*compression none"):
        training_splits(tfrecord_splits["train"], misnamed)
    ex = tf.train.Example()
    ex.features.feature["image/encoded"].bytes_list.value.append(b"x")
    bad = str(tmp_path / "bad.tfrecord")
    with tf.io.TFRecordWriter(bad) as w:
        w.write(record_to_example(aasce.load_split(tiny_data, "training", progress=False)[0]).SerializeToString())
        w.write(ex.SerializeToString())
    with pytest.raises(DataSourceError, match=r"data: .*bad\.tfrecord: record 1 is not a seg4reg tf.Example"):
        training_splits(bad, tfrecord_splits["eval"])


def _config(tmp_path, name="tiny_sources") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment({"name": name, **ONE_STEP})))
    return str(path)


def _history(run) -> list[dict]:
    with open(os.path.join(run, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # two one-step trainings
def test_cli_trains_on_tfrecords_as_on_the_root(tiny_data, tfrecord_splits, tmp_path):
    """The same examples through TFRecords (no AASCE folder) train exactly as through the root."""
    from seg4reg_tf.cli import main

    config = _config(tmp_path)
    tfr, root = str(tmp_path / "tfr"), str(tmp_path / "root")
    assert main(["train", "--config", config, "--train-files", tfrecord_splits["train"].replace("*", "*-of-*.gz"),
                 "--eval-files", tfrecord_splits["eval"], "--out", tfr]) == 0
    summary = json.loads(open(os.path.join(tfr, "train_summary.json")).read())
    assert (summary["n_train"], summary["n_val"]) == tfrecord_splits["n"] == (8, 2)
    assert summary["val_data"].startswith(tfrecord_splits["eval"])
    # the fixed split of the root in the same order: the same losses (train split shuffled with the same seed)
    # needs the records in the root's order: one file each, not the two interleaved shards
    train, val = aasce.train_val_split(aasce.load_split(tiny_data, "training", progress=False))
    one = _write(train, str(tmp_path / "train.tfrecord"))
    tfr1 = str(tmp_path / "tfr1")
    assert main(["train", "--config", config, "--train-data", one, "--val-data", tfrecord_splits["plain_eval"],
                 "--out", tfr1]) == 0
    assert main(["train", "--config", config, "--data", tiny_data, "--out", root]) == 0
    a, b = _history(tfr1)[0], _history(root)[0]
    for key in ("loss", "val_loss", "val_smape"):
        assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5), key


def test_cli_refuses_incomplete_or_mixed_sources(tiny_data, tfrecord_splits, tmp_path, capsys):
    from seg4reg_tf.cli import main

    config, run = _config(tmp_path), str(tmp_path / "run")
    assert main(["train", "--config", config, "--train-data", tfrecord_splits["train"], "--out", run]) == 2
    assert "--train-files needs --eval-files" in capsys.readouterr().err
    assert main(["train", "--config", config, "--data", tiny_data, "--train-data", tfrecord_splits["train"],
                 "--val-data", tfrecord_splits["eval"], "--out", run]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["train", "--config", config, "--train-data", str(tmp_path / "none-*.gz"),
                 "--val-data", tfrecord_splits["eval"], "--out", run]) == 2
    err = capsys.readouterr().err
    assert "data: no TFRecord files match" in err and "none-*.gz" in err and "Traceback" not in err
    assert not os.path.exists(run)  # refused before anything was written
