"""Tests of the synthetic AASCE-layout generator."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import scipy.io

from seg4reg_tf.data.aasce import find_quirks, load_split
from seg4reg_tf.data.synth import write_synthetic_dataset
from seg4reg_tf.geometry import cobb_angles, landmarks_to_label_map

SMALL = (200, 260)


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ds"
    write_synthetic_dataset(root, 8, 3, 11, height_range=SMALL, progress=False)
    return root


def test_same_seed_is_byte_identical_other_seed_differs(ds, tmp_path):
    again = tmp_path / "again"
    write_synthetic_dataset(again, 8, 3, 11, height_range=SMALL, progress=False)
    a, b = _tree(ds), _tree(again)
    assert sorted(a) == sorted(b)
    assert len(a) == 2 * (8 + 3) + 6  # images, .mat files, 3 CSVs per split
    for key in a:
        assert a[key] == b[key], key
    other = tmp_path / "other"
    write_synthetic_dataset(other, 8, 3, 12, height_range=SMALL, progress=False)
    c = _tree(other)
    assert sorted(c) == sorted(a)  # same names
    jpgs = [k for k in a if k.endswith(".jpg")]
    mats = [k for k in a if k.endswith(".mat")]
    assert all(a[k] != c[k] for k in jpgs)
    assert all(a[k] != c[k] for k in mats)


def test_layout_and_formats(ds):
    for split, n in (("training", 8), ("test", 3)):
        lab = ds / "labels" / split
        raw = (lab / "filenames.csv").read_bytes()
        assert raw.endswith(b"\r\n") and raw.count(b"\r\n") == n and raw.count(b"\n") == n
        names = raw.decode("ascii").split("\r\n")[:-1]
        assert names == sorted(names) and all(" " in nm and nm.endswith(".jpg") for nm in names)
        assert all((ds / "data" / split / nm).is_file() for nm in names)
        for csv, cols in (("landmarks.csv", 136), ("angles.csv", 3)):
            text = (lab / csv).read_bytes()
            assert b"\r" not in text
            rows = text.decode().split("\n")[:-1]
            assert len(rows) == n
            for row in rows:
                cells = row.split(",")
                assert len(cells) == cols
                for cell in cells:  # at most 5 significant digits, MATLAB %g style
                    digits = re.sub(r"^0\.0*", "", cell.replace("-", "")).replace(".", "")
                    assert len(digits.lstrip("0") or "0") <= 5 and float(cell) == float(f"{float(cell):.5g}")
        for nm in names:
            raw_mat = (lab / (nm + ".mat")).read_bytes()
            assert raw_mat.startswith(b"MATLAB 5.0 MAT-file")
            mat = scipy.io.loadmat(str(lab / (nm + ".mat")))
            assert [k for k in mat if not k.startswith("__")] == ["p2"]
            assert mat["p2"].dtype == np.uint16 and mat["p2"].shape == (68, 2)
            img = cv2.imread(str(ds / "data" / split / nm), cv2.IMREAD_UNCHANGED)
            assert img.dtype == np.uint8 and img.ndim == 2


def test_labels_reproduce_angles_and_are_plausible(ds):
    for split in ("training", "test"):
        recs = load_split(ds, split)
        lms = np.loadtxt(ds / "labels" / split / "landmarks.csv", delimiter=",", ndmin=2)
        for rec, row in zip(recs, lms):
            assert np.max(np.abs(cobb_angles(rec.landmarks, rec.height) - rec.angles)) <= 0.01
            # landmarks.csv = x/W then y/H, rounded to 5 significant digits (computed independently here)
            exact = np.concatenate([rec.landmarks[:, 0] / rec.width, rec.landmarks[:, 1] / rec.height])
            assert [float(f"{v:.5g}") for v in exact] == list(row)
            assert find_quirks(rec) == []
            p = rec.landmarks
            assert p.min() >= 0 and p[:, 0].max() < rec.width and p[:, 1].max() < rec.height
            assert SMALL[0] <= rec.height <= SMALL[1]
            assert 0.3 <= rec.width / rec.height <= 0.65
            c = p.reshape(17, 4, 2)
            vh = np.linalg.norm(c[:, 2] - c[:, 0], axis=1)
            vw = np.linalg.norm(c[:, 1] - c[:, 0], axis=1)
            assert vh[-3:].mean() > vh[:3].mean()  # vertebrae grow downward
            assert 1.1 < np.median(vw / vh) < 1.9
            assert rec.height / 40 < np.median(vh) < rec.height / 15


def test_image_shows_the_vertebrae(ds):
    for rec in load_split(ds, "training", check_images=False):
        img = cv2.imread(rec.image_path, cv2.IMREAD_GRAYSCALE).astype(np.float64)
        lab = landmarks_to_label_map(rec.landmarks, rec.height, rec.width)
        bone = lab > 0
        near = cv2.dilate(bone.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~bone
        assert img[bone].mean() > img[near].mean() + 40  # bone bright against its surroundings


def test_angle_distribution(tmp_path):
    write_synthetic_dataset(tmp_path, 60, 0, 5, height_range=(120, 140), progress=False)
    pt = np.loadtxt(tmp_path / "labels/training/angles.csv", delimiter=",")[:, 0]
    assert 15 < pt.mean() < 35
    assert pt.max() < 90 and (pt > 40).sum() >= 3 and (pt < 10).sum() >= 3


@pytest.mark.parametrize("kwargs, key", [
    (dict(n_train=-1, n_test=0, seed=0), "n_train"),
    (dict(n_train=1, n_test=1.5, seed=0), "n_test"),
    (dict(n_train=1, n_test=0, seed=-3), "seed"),
    (dict(n_train=1, n_test=0, seed=0, height_range=(500, 100)), "height_range"),
])
def test_bad_arguments(tmp_path, kwargs, key):
    with pytest.raises(ValueError, match=key):
        write_synthetic_dataset(tmp_path, **kwargs, progress=False)


def test_mat_header_does_not_depend_on_the_clock(monkeypatch):
    import time

    from seg4reg_tf.data.synth import mat_bytes

    p2 = np.arange(136, dtype=np.uint16).reshape(68, 2)
    first = mat_bytes(p2)
    monkeypatch.setattr(time, "asctime", lambda *a: "Sat Feb 29 12:34:56 2042")
    second = mat_bytes(p2)
    assert first == second
    assert b"2042" not in second
    assert np.array_equal(scipy.io.loadmat(__import__("io").BytesIO(second))["p2"], p2)
