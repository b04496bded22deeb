"""Tests of `seg4reg data check|synth|convert` through the top-level dispatcher."""
from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest

from seg4reg_tf.cli import main


@pytest.fixture
def synth_root(tmp_path):
    out = tmp_path / "ds"
    rc = main(["data", "synth", str(out), "--n-train", "5", "--n-test", "2", "--seed", "4",
               "--min-height", "200", "--max-height", "240"])
    assert rc == 0
    return out


def test_synth_writes_the_layout(synth_root):
    names = (synth_root / "labels/training/filenames.csv").read_bytes().decode().split("\r\n")[:-1]
    assert len(names) == 5
    assert len(os.listdir(synth_root / "data/test")) == 2
    angles = np.loadtxt(synth_root / "labels/training/angles.csv", delimiter=",")
    assert angles.shape == (5, 3)


def test_check_reports(synth_root, capsys):
    assert main(["data", "check", str(synth_root), "--split", "training"]) == 0
    out = capsys.readouterr().out
    assert "images:              5" in out
    assert "official Cobb vs angles.csv" in out and "label quirks (kept unchanged): 0 files" in out


def test_check_names_the_broken_file_without_traceback(synth_root, capsys):
    name = (synth_root / "labels/test/filenames.csv").read_bytes().decode().split("\r\n")[0]
    os.remove(synth_root / "labels/test" / (name + ".mat"))
    rc = main(["data", "check", str(synth_root), "--split", "test"])
    err = capsys.readouterr().err
    assert rc != 0
    assert name + ".mat" in err and "Traceback" not in err


def test_check_missing_root(tmp_path, capsys):
    rc = main(["data", "check", str(tmp_path / "absent"), "--split", "training"])
    assert rc != 0 and "absent" in capsys.readouterr().err


def test_synth_bad_argument(tmp_path, capsys):
    rc = main(["data", "synth", str(tmp_path / "x"), "--n-train", "-2", "--n-test", "1", "--seed", "0"])
    assert rc != 0 and "n_train" in capsys.readouterr().err


def test_convert_calls_tfrecords(monkeypatch, tmp_path, capsys):
    calls = []

    def convert_split(root, out_dir, split, num_shards):
        calls.append((root, out_dir, split, num_shards))
        return [os.path.join(out_dir, f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord") for i in range(num_shards)]

    fake = types.ModuleType("seg4reg_tf.data.tfrecords")
    fake.convert_split = convert_split
    monkeypatch.setitem(sys.modules, "seg4reg_tf.data.tfrecords", fake)
    rc = main(["data", "convert", "ROOT", str(tmp_path / "rec"), "--split", "test", "--shards", "3"])
    assert rc == 0
    assert calls == [("ROOT", str(tmp_path / "rec"), "test", 3)]
    out = capsys.readouterr().out
    assert "test-00002-of-00003.tfrecord" in out
    assert main(["data", "convert", "ROOT", "OUT", "--shards", "0"]) != 0
