"""Tests of the AASCE reader: loading, format errors naming the file, quirks, splits, the real data."""
from __future__ import annotations

import os
import pathlib
import shutil
import time
import warnings

import cv2
import numpy as np
import pytest
import scipy.io

from seg4reg_tf.data import aasce
from seg4reg_tf.data.aasce import AasceFormatError, AasceRecord, find_quirks, load_split
from seg4reg_tf.data.synth import write_synthetic_dataset
from seg4reg_tf.geometry import cobb_angles

REPO = pathlib.Path(__file__).resolve().parents[2]
REAL = REPO / ".." / "shared" / "aasce" / "boostnet_labeldata"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ds"
    write_synthetic_dataset(root, 6, 2, 3, height_range=(200, 260), progress=False)
    return root


@pytest.fixture
def copy_root(synth_root, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(synth_root, dst)
    return dst


def _names(root, split="training"):
    return (root / "labels" / split / "filenames.csv").read_bytes().decode().split("\r\n")[:-1]


def test_load_split_matches_files(synth_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean synthetic set raises no quirk warning
        recs = load_split(synth_root, "training")
    names = _names(synth_root)
    assert [r.filename for r in recs] == names
    angles = np.loadtxt(synth_root / "labels/training/angles.csv", delimiter=",")
    for i, r in enumerate(recs):
        img = cv2.imread(r.image_path, cv2.IMREAD_UNCHANGED)
        assert (r.height, r.width) == img.shape
        assert os.path.isabs(r.image_path) and r.image_path.endswith(names[i])
        p2 = scipy.io.loadmat(str(synth_root / "labels/training" / (names[i] + ".mat")))["p2"]
        assert r.landmarks.dtype == np.float64 and np.array_equal(r.landmarks, p2.astype(np.float64))
        np.testing.assert_array_equal(r.angles, angles[i])
    # header-only reading gives the same sizes
    fast = load_split(synth_root, "training", check_images=False)
    assert [(r.height, r.width) for r in fast] == [(r.height, r.width) for r in recs]


def test_read_image_size_png_and_jpeg(tmp_path):
    img = np.zeros((37, 23), np.uint16)
    cv2.imwrite(str(tmp_path / "a b.png"), img)
    cv2.imwrite(str(tmp_path / "a b.jpg"), img.astype(np.uint8))
    assert aasce.read_image_size(str(tmp_path / "a b.png")) == (37, 23)
    assert aasce.read_image_size(str(tmp_path / "a b.jpg")) == (37, 23)


def _savemat(path, **vars_):
    scipy.io.savemat(str(path), vars_)


def _first(root):
    return _names(root)[0]


def _lab(root):
    return root / "labels" / "training"


def _img(root):
    return root / "data" / "training"


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _drop_last_line(path):
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:-2]) + b"\n")


def _edit_first_line(path, fn):
    lines = path.read_text().split("\n")
    lines[0] = fn(lines[0])
    path.write_text("\n".join(lines))


BREAKAGES = {
    # name: (mutate(root) -> expected substring of the message (a file name))
    "missing image": lambda r: (os.remove(_img(r) / _first(r)), _first(r))[1],
    "garbage image": lambda r: ((_img(r) / _first(r)).write_bytes(b"not an image at all"), _first(r))[1],
    "truncated jpeg": lambda r: (_truncate(_img(r) / _first(r)), _first(r))[1],
    "missing mat": lambda r: (os.remove(_lab(r) / (_first(r) + ".mat")), _first(r) + ".mat")[1],
    "corrupt mat": lambda r: ((_lab(r) / (_first(r) + ".mat")).write_bytes(b"\x00" * 50), _first(r) + ".mat")[1],
    "mat without p2": lambda r: (_savemat(_lab(r) / (_first(r) + ".mat"), q=np.zeros((68, 2))), _first(r) + ".mat")[1],
    "p2 wrong shape": lambda r: (_savemat(_lab(r) / (_first(r) + ".mat"), p2=np.zeros((67, 2), np.uint16)),
                                 _first(r) + ".mat")[1],
    "missing filenames": lambda r: (os.remove(_lab(r) / "filenames.csv"), "filenames.csv")[1],
    "landmarks rows": lambda r: (_drop_last_line(_lab(r) / "landmarks.csv"), "landmarks.csv")[1],
    "angles rows": lambda r: (_drop_last_line(_lab(r) / "angles.csv"), "angles.csv")[1],
    "landmarks columns": lambda r: (_edit_first_line(_lab(r) / "landmarks.csv", lambda s: s.rsplit(",", 1)[0]),
                                    "landmarks.csv")[1],
    "angles non-numeric": lambda r: (_edit_first_line(_lab(r) / "angles.csv", lambda s: "abc," + s.split(",", 1)[1]),
                                     "angles.csv")[1],
}


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_format_errors_name_the_file(copy_root, kind):
    expected = BREAKAGES[kind](copy_root)
    with pytest.raises(AasceFormatError) as info:
        load_split(copy_root, "training")
    assert expected in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_jpeg_header_only_still_reads_size(copy_root):
    # Truncation after the frame header is only caught by a full check.
    _truncate(_img(copy_root) / _first(copy_root))
    recs = load_split(copy_root, "training", check_images=False)
    assert len(recs) == 6


def test_missing_root_and_split(tmp_path, synth_root):
    with pytest.raises(AasceFormatError, match="nowhere"):
        load_split(tmp_path / "nowhere", "training")
    with pytest.raises(AasceFormatError, match=r"validation"):
        load_split(synth_root, "validation")


def _clean_record(height=1000, width=400) -> AasceRecord:
    p = np.zeros((17, 4, 2))
    for v in range(17):
        top, bottom = 100 + 50 * v, 140 + 50 * v
        p[v] = [[150, top], [250, top], [150, bottom], [250, bottom]]
    return AasceRecord("hand.jpg", "/x/hand.jpg", height, width, p.reshape(68, 2), np.zeros(3))


def _with(record, p):
    return AasceRecord(record.filename, record.image_path, record.height, record.width, p, record.angles)


def test_find_quirks_hand_made():
    rec = _clean_record()
    assert find_quirks(rec) == []
    # T4 (v=3): TL <-> TR
    p = rec.landmarks.copy()
    p[[12, 13]] = p[[13, 12]]
    found = find_quirks(_with(rec, p))
    assert len(found) == 1 and "left/right" in found[0] and "T4" in found[0]
    # L2 (v=13): TR <-> BR (top/bottom)
    p = rec.landmarks.copy()
    p[[53, 55]] = p[[55, 53]]
    found = find_quirks(_with(rec, p))
    assert len(found) == 1 and "top/bottom" in found[0] and "L2" in found[0]
    # T11 (v=10) moved above T10 (v=9): one order finding, naming T11
    p = rec.landmarks.copy()
    p[40:44, 1] -= 80  # centre 620 -> 540 < T10's 570, still above T12's 670
    found = find_quirks(_with(rec, p))
    assert len(found) == 1 and "out of order" in found[0] and "T11" in found[0]
    # equal centres are not strictly increasing
    p = rec.landmarks.copy()
    p[4:8, 1] = p[0:4, 1]
    assert aasce.quirk_kinds(find_quirks(_with(rec, p))) == {"order"}
    # a point outside (x > W), and one exactly on the border (inside)
    p = rec.landmarks.copy()
    p[67, 0] = 405
    p[0, 1] = 0  # TL of T1 on the top border
    found = find_quirks(_with(rec, p))
    assert len(found) == 1 and "outside" in found[0] and "landmark 67" in found[0]
    # labels are never modified
    assert np.array_equal(_clean_record().landmarks, rec.landmarks)


def test_train_val_split():
    items = list(range(12))
    train, val = aasce.train_val_split(items)
    assert val == [4, 9]
    assert train == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11]


def test_check_split_report(copy_root):
    lab = _lab(copy_root)
    # shift one angle by +1.5 deg and one landmark value well beyond 5-digit rounding
    angles = np.loadtxt(lab / "angles.csv", delimiter=",")
    rows = (lab / "angles.csv").read_text().split("\n")
    first = rows[1].split(",")
    first[1] = f"{float(first[1]) + 1.5:.5g}"
    rows[1] = ",".join(first)
    (lab / "angles.csv").write_text("\n".join(rows))
    _edit_first_line(lab / "landmarks.csv",
                     lambda s: ",".join([f"{float(s.split(',')[0]) + 0.01:.5g}"] + s.split(",")[1:]))
    with pytest.warns(aasce.AasceQuirkWarning, match="disagree"):
        load_split(copy_root, "training")
    rep = aasce.check_split(copy_root, "training")
    names = _names(copy_root)
    assert rep["count"] == 6
    sizes = [cv2.imread(str(_img(copy_root) / n), 0).shape for n in names]
    assert rep["height_range"] == (min(s[0] for s in sizes), max(s[0] for s in sizes))
    assert rep["width_range"] == (min(s[1] for s in sizes), max(s[1] for s in sizes))
    assert rep["quirks"] == {}
    assert rep["max_angle_error"] == pytest.approx(1.5, abs=0.01)
    assert rep["angle_error_file"] == names[1]
    assert rep["landmark_discrepancy_file"] == names[0]
    assert rep["max_landmark_discrepancy"] == pytest.approx(0.01, abs=1e-4)
    assert angles.shape == (6, 3)


# ---------------------------------------------------------------------------------------------- real data

real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real AASCE data not found at {REAL}")


@real
def test_real_training_split_loads_and_reproduces_angles():
    t0 = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = load_split(REAL, "training", check_images=False)
    assert time.time() - t0 < 30
    assert len(recs) == 481
    assert any(issubclass(w.category, aasce.AasceQuirkWarning) for w in caught)
    assert recs[0].filename == "sunhl-1th-02-Jan-2017-162 A AP.jpg"
    hs = [r.height for r in recs]
    ws = [r.width for r in recs]
    assert (min(hs), max(hs), min(ws), max(ws)) == (973, 3755, 355, 1427)
    err = max(np.max(np.abs(cobb_angles(r.landmarks, r.height) - r.angles)) for r in recs)
    assert err <= 0.01
    assert max(r.angles.max() for r in recs) > 150  # not clipped
    train, val = aasce.train_val_split(recs)
    assert (len(train), len(val)) == (385, 96)


@real
def test_real_quirk_counts():
    # Verified on the 481 training files (the team's counts of 11 / 28 / 1 cover the whole 609-image release):
    # swapped corners in 6 files (2 left/right, 4 top/bottom), 24 files with centres out of order,
    # 1 file with a point outside its image.
    rep = aasce.check_split(REAL, "training", check_images=False, progress=False)
    c = rep["quirk_counts"]
    assert (c["swapped_lr"], c["swapped_tb"], c["swapped"], c["order"], c["outside"]) == (2, 4, 6, 24, 1)
    outside = [n for n, f in rep["quirks"].items() if "outside" in aasce.quirk_kinds(f)]
    assert outside == ["sunhl-1th-25-Jul-2016-49 A AP.jpg"]
    assert rep["max_landmark_discrepancy"] == 0.0
    assert rep["max_angle_error"] <= 0.01
