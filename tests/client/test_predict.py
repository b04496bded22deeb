"""`predict`: JPEG / 16-bit PNG / DICOM in, JSON + overlay out, geometry mapped back to original pixels."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from seg4reg_tf.client.predict import LocalPredictor, ServerPredictor, load_input, run_predict
from seg4reg_tf.geometry import VERTEBRA_NAMES, Letterbox, cobb_angles_details
from tests.client.test_dicom import SECRET_ID, write_dicom
from tests.export import helpers_export as he
from tests.fixtures import label_encoded_jpeg, label_encoded_png16, label_map_spine, tiny_data_config

SIZE = (512, 256)
SECRETS = (b"SECRETNAME", SECRET_ID.encode(), b"Doe^Jane")


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("served") / "seg4reg"
    he.export_oracle(base, 1, model=he.oracle_model(SIZE), preprocessing=tiny_data_config(image_size=SIZE))
    return base


@pytest.fixture(scope="module")
def predictor(model_base):
    return LocalPredictor(model_base)


@pytest.fixture(scope="module")
def spine():
    return label_map_spine(600, 300, phase=2.0)  # PT 42.6, MT 8.5, TL 26.9 deg


@pytest.fixture()
def inputs(tmp_path, spine):
    _, labels = spine
    d = tmp_path / "in"
    d.mkdir()
    (d / "spine.jpg").write_bytes(label_encoded_jpeg(labels))
    (d / "spine16.png").write_bytes(label_encoded_png16(labels))
    stored = labels.astype(np.uint16) * 200  # 0..3400 in 12 bits
    write_dicom(d / "mono1.dcm", 4095 - stored, "MONOCHROME1", spacing=(0.15, 0.15))
    write_dicom(d / "mono2.dcm", stored, "MONOCHROME2", spacing=(0.15, 0.15))
    return d


@pytest.mark.numeric
def test_labels_mapped_back_to_original(predictor, spine, inputs, record_property):
    _, labels = spine
    item = load_input(inputs / "spine16.png")
    out = predictor.predict([item.model_bytes])
    lb = Letterbox.from_outputs(out)
    back = lb.mask_to_original(out["vertebra_labels"][0])
    assert back.shape == (600, 300)

    def agreement(b):
        fg = (labels > 0) | (b > 0)
        return np.mean(b[fg] == labels[fg])

    # Vertebra edges blur into intermediate grey values (= other labels for the oracle) when
    # resampled, so per-label agreement is below 1; the foreground itself agrees much better.
    record_property("agreement", agreement(back))
    assert agreement(back) > 0.8  # measured 0.876
    assert np.mean((back > 0) == (labels > 0)) > 0.97  # measured 0.985
    # The mapping is aligned: shifting it by one model pixel either way only makes it worse.
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        moved = Letterbox(lb.scale, lb.pad_top + dy, lb.pad_left + dx, lb.orig_height, lb.orig_width)
        shifted = moved.mask_to_original(out["vertebra_labels"][0])
        assert agreement(shifted) < agreement(back), (dy, dx)


def test_predict_folder_jpeg_png16_dicom(predictor, spine, inputs, tmp_path, capsys):
    landmarks, _ = spine
    truth = cobb_angles_details(landmarks, 600)
    out = tmp_path / "out"
    assert run_predict([inputs], out, predictor, disagreement_threshold=5.0) == 0
    stems = ["mono1", "mono2", "spine", "spine16"]
    for stem in stems:
        result = json.loads((out / f"{stem}.json").read_text())
        assert set(result["angles"]) == {"PT", "MT", "TL"} and result["unit"] == "deg"
        assert set(result["heads"]) == {"cobb_angles", "cobb_angles_image", "cobb_angles_segmentation"}
        assert result["original_size"] == [600, 300]
        geo = result["fitted_vertebrae"]
        assert geo["missing_vertebrae"] == []
        np.testing.assert_allclose([geo["angles"][k] for k in ("PT", "MT", "TL")], truth.angles, atol=2.5)
        # End vertebrae: the named ones of the true curve, up to a neighbour (near-equal tilts tie).
        for k, name in enumerate(("PT", "MT", "TL")):
            curve = geo["curves"][name]
            assert curve["end_vertebrae"] == f"{curve['upper']}-{curve['lower']}"
            got = (VERTEBRA_NAMES.index(curve["upper"]), VERTEBRA_NAMES.index(curve["lower"]))
            assert max(abs(g - t) for g, t in zip(got, truth.end_vertebrae[k])) <= 1, (
                name, got, truth.end_vertebrae[k])
        assert isinstance(result["heads_disagree"], bool)
        gd = result["fitted_disagreement"]
        assert result["heads_disagree"] == (result["heads_disagreement"] > 5.0 or (gd is not None and gd > 20.0))
        overlay = cv2.imread(str(out / f"{stem}_overlay.png"))
        assert overlay is not None and overlay.shape[0] > 600 and overlay.shape[1] > 300
    spacing = json.loads((out / "mono1.json").read_text())["pixel_spacing_mm"]
    assert spacing == [0.15, 0.15]
    assert json.loads((out / "spine.json").read_text())["pixel_spacing_mm"] is None
    # MONOCHROME1 inverted = its MONOCHROME2 equivalent, pixel for pixel in the outputs.
    m1, m2 = (json.loads((out / f"{s}.json").read_text()) for s in ("mono1", "mono2"))
    m1.pop("file"), m2.pop("file")
    assert m1 == m2
    np.testing.assert_array_equal(cv2.imread(str(out / "mono1_overlay.png")),
                                  cv2.imread(str(out / "mono2_overlay.png")))
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["file"] for r in rows] == ["mono1.dcm", "mono2.dcm", "spine.jpg", "spine16.png"]
    assert all(r["status"] == "ok" for r in rows)
    # No patient identifier anywhere: outputs or console.
    captured = capsys.readouterr()
    blobs = [p.read_bytes() for p in out.iterdir()] + [captured.out.encode(), captured.err.encode()]
    for secret in SECRETS:
        assert not any(secret in b for b in blobs), secret
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_bad_files_reported_and_skipped(predictor, spine, inputs, tmp_path, capsys):
    _, labels = spine
    (inputs / "notes.txt").write_text("not an image")
    good = label_encoded_png16(labels)
    (inputs / "cut.png").write_bytes(good[: len(good) // 2])
    (inputs / "tiny.png").write_bytes(label_encoded_png16(labels[:40, :40]))
    for name in ("mono1.dcm", "mono2.dcm", "spine.jpg"):
        (inputs / name).unlink()
    out = tmp_path / "out"
    assert run_predict([inputs], out, predictor) == 1
    err = capsys.readouterr().err
    for name in ("notes.txt", "cut.png", "tiny.png"):
        assert name in err
        assert not (out / f"{Path(name).stem}.json").exists()
    assert "size out of range" in err
    # the closing lines name each failed file with its reason, not only its name
    closing = err[err.index("3 of 4 file(s) failed:"):].splitlines()[1:]
    assert len(closing) == 3 and all(line.startswith("  ") and ": " in line for line in closing)
    assert any(line.strip().startswith("tiny.png: ") and "size out of range" in line for line in closing)
    assert (out / "spine16.json").exists()
    rows = {r["file"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert rows["spine16.png"]["status"] == "ok"
    assert {rows[n]["status"] for n in ("notes.txt", "cut.png", "tiny.png")} == {"error"}


def test_threshold_sets_heads_disagree(predictor, inputs, tmp_path):
    for out, disagreement, fitted in (("lo", 0.0, 1000.0), ("hi", 1000.0, 1000.0), ("geo", 1000.0, 0.0)):
        run_predict([inputs / "spine.jpg"], tmp_path / out, predictor, disagreement_threshold=disagreement,
                    fitted_threshold=fitted)
    lo = json.loads((tmp_path / "lo" / "spine.json").read_text())
    hi = json.loads((tmp_path / "hi" / "spine.json").read_text())
    geo = json.loads((tmp_path / "geo" / "spine.json").read_text())
    assert lo["heads_disagreement"] > 0
    assert lo["heads_disagree"] is True and hi["heads_disagree"] is False
    # a caution, not a refusal: the model's verdict stands, and the JSON says why to look again
    assert lo["measurable"] == hi["measurable"] and hi["caution"] is None
    assert lo["caution"].startswith("the regression heads differ by") and "(> 0)" in lo["caution"]
    # the fitted-vertebrae head counts too: its angles differ from the reported ones
    expected = np.mean([abs(geo["fitted_vertebrae"]["angles"][k] - geo["angles"][k]) for k in ("PT", "MT", "TL")])
    assert geo["fitted_disagreement"] == pytest.approx(expected) and expected > 0
    assert geo["heads_disagree"] is True and "vertebrae fitted to the segmentation" in geo["caution"]
    assert not (tmp_path / "lo" / "summary.csv").exists()  # single file: no summary
    with pytest.raises(ValueError, match="threshold"):
        run_predict([inputs / "spine.jpg"], tmp_path / "x", predictor, disagreement_threshold=-1.0)
    with pytest.raises(ValueError, match="fitted_threshold"):
        run_predict([inputs / "spine.jpg"], tmp_path / "x", predictor, fitted_threshold=float("nan"))


def test_server_predictor_uses_client(monkeypatch, predictor, inputs, tmp_path):
    import seg4reg_tf.client.client as client_mod

    calls = []

    class FakeClient:
        def __init__(self, target, *, rest=False, model_name="seg4reg", **kw):
            calls.append((target, rest, model_name))

        def predict(self, inputs, output_filter=None):
            assert list(inputs) == ["image_bytes"]
            return predictor.predict(inputs["image_bytes"])

    monkeypatch.setattr(client_mod, "PredictClient", FakeClient)
    remote = ServerPredictor("localhost:8500", rest=True)
    assert run_predict([inputs / "spine16.png"], tmp_path / "o", remote) == 0
    assert calls == [("localhost:8500", True, "seg4reg")]
    assert (tmp_path / "o" / "spine16_overlay.png").exists()


def test_cli_predict(model_base, inputs, tmp_path):
    from seg4reg_tf.cli import main

    rc = main(["predict", str(inputs / "spine.jpg"), str(inputs / "mono1.dcm"), "--model", str(model_base),
               "--out", str(tmp_path / "cli"), "--disagreement-threshold", "3"])
    assert rc == 0
    assert json.loads((tmp_path / "cli" / "spine.json").read_text())["heads_disagreement_threshold"] == 3.0
    assert (tmp_path / "cli" / "summary.csv").exists()
    with pytest.raises(SystemExit):
        main(["predict", str(inputs / "spine.jpg"), "--out", str(tmp_path / "x")])  # needs --model or --server


def test_full_disk_stops_predict_naming_the_file_and_leaves_no_half_result(predictor, inputs, small_disk, capsys):
    """Issue 29: the overlays of the first images fit, then the disk is full: exit 1 with a short message
    naming the file and the size, no traceback, and no image with an overlay but no JSON (or the reverse)."""
    disk = small_disk(300)  # an overlay + JSON is ~85 KiB here: three images fit, the fourth does not
    out = disk / "out"
    assert run_predict([inputs], out, predictor, disagreement_threshold=5.0, progress=False) == 1
    err = capsys.readouterr().err
    assert "predict: no space left on device while writing" in err and str(out) in err and "MB needed" in err
    assert "Traceback" not in err
    written = sorted(p.name for p in out.iterdir())
    stems = {n.split("_overlay.png")[0].split(".json")[0] for n in written}
    assert written == sorted([f"{s}.json" for s in stems] + [f"{s}_overlay.png" for s in stems])  # pairs only
    assert 0 < len(stems) < 4 and not any(n.startswith(".incoming") for n in written)
