import csv
import json
import os

import numpy as np
import pytest

from seg4reg_tf.evaluation.evaluate import evaluate, evaluate_saved_model, resolve_saved_model_dir
from seg4reg_tf.geometry import landmarks_to_label_map
from tests.fixtures import letterbox_by_hand, tiny_data_config, to_model_frame, write_spine_records

SIZE = (128, 64)
CFG = tiny_data_config(image_size=SIZE)


def _smape_by_hand(pred, true):
    """Official SMAPE written out independently: per image sum|p-t| / sum(p+t), times 100, averaged."""
    total = 0.0
    for p, t in zip(pred, true):
        num = sum(abs(a - b) for a, b in zip(p, t))
        den = sum(a + b for a, b in zip(p, t))
        total += 0.0 if den == 0 else num / den
    return 100.0 * total / len(pred)


class Oracle:
    """Stand-in model: returns the records' true angles + offsets and a one-hot of the true label map."""

    def __init__(self, records, offset=0.0, seg_offset=0.0, with_seg=True, bytes_mode=False):
        self.records, self.offset, self.seg_offset = records, offset, seg_offset
        self.with_seg, self.bytes_mode, self.pos, self.calls = with_seg, bytes_mode, 0, 0

    def __call__(self, batch):
        b = len(batch)
        recs = self.records[self.pos : self.pos + b]
        self.pos += b
        self.calls += 1
        if not self.bytes_mode:
            assert batch.shape == (b, *SIZE, 1) and batch.dtype == np.float32
        true = np.stack([r.angles for r in recs])
        out = {
            "cobb_angles": true + self.offset,
            "cobb_angles_image": true + self.offset,
            "cobb_angles_segmentation": true + self.seg_offset,
        }
        ts = [letterbox_by_hand(r.height, r.width, SIZE) for r in recs]
        labs = np.stack([landmarks_to_label_map(to_model_frame(r.landmarks, t), *SIZE) for r, t in zip(recs, ts)])
        if self.with_seg:
            if self.bytes_mode:
                out["vertebra_labels"] = labs
            else:
                out["segmentation"] = np.eye(18, dtype=np.float32)[labs]
        if self.bytes_mode:
            out["scale"] = np.array([t[0] for t in ts], np.float32)
            out["padding"] = np.array([[t[1], t[2]] for t in ts], np.float32)
            out["original_size"] = np.array([[r.height, r.width] for r in recs], np.int32)
        return out


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_spine_records(tmp_path_factory.mktemp("imgs"), n=5, sizes=((400, 160),))


def test_perfect_predictions_give_zero_smape_and_full_dice(records, tmp_path):
    oracle = Oracle(records)
    rep = evaluate(oracle, records, CFG, str(tmp_path), head_name="image", batch_size=2)
    assert oracle.calls == 3  # 5 images in batches of 2
    assert rep["n_images"] == 5 and rep["head"] == "image"
    assert rep["smape"] == 0.0 and rep["mae_pt"] == rep["mae_mt"] == rep["mae_tl"] == 0.0
    assert rep["dice_mean"] == pytest.approx(1.0)
    assert set(rep["heads"]) == {"reported", "image", "segmentation", "fitted"}
    assert rep["heads_disagreement_mean"] == 0.0
    on_disk = json.load(open(tmp_path / "report.json"))
    for key in ("n_images", "smape", "mae_pt", "mae_mt", "mae_tl", "dice_mean", "head", "heads",
                "fitted_failed_fraction"):
        assert key in on_disk
    assert on_disk["smape"] == 0.0


def test_offset_gives_hand_computed_smape_and_cases(records, tmp_path):
    rep = evaluate(Oracle(records, offset=3.0, seg_offset=-1.0), records, CFG, str(tmp_path),
                   head_name="image", batch_size=3)
    true = [list(r.angles) for r in records]
    expected = _smape_by_hand([[a + 3.0 for a in t] for t in true], true)
    assert rep["smape"] == pytest.approx(expected, rel=1e-9)
    assert rep["mae_pt"] == pytest.approx(3.0) and rep["mae_tl"] == pytest.approx(3.0)
    assert rep["heads"]["segmentation"]["mae_mt"] == pytest.approx(1.0)
    assert rep["heads"]["segmentation"]["smape"] == pytest.approx(
        _smape_by_hand([[a - 1.0 for a in t] for t in true], true), rel=1e-9)
    assert rep["heads_disagreement_mean"] == pytest.approx(4.0)
    # The seg-derived angles of an exact (but tiny, 128x64) label map: measured, not predicted.
    seg = rep["heads"]["fitted"]
    assert seg["n"] + round(rep["fitted_failed_fraction"] * 5) == 5
    with open(tmp_path / "cases.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [r.filename for r in records]
    assert float(rows[0]["true_pt"]) == pytest.approx(records[0].angles[0], abs=1e-4)
    assert float(rows[0]["reported_pt"]) == pytest.approx(records[0].angles[0] + 3.0, abs=1e-4)
    assert float(rows[1]["segmentation_mt"]) == pytest.approx(records[1].angles[1] - 1.0, abs=1e-4)
    assert float(rows[2]["heads_disagreement"]) == pytest.approx(4.0)
    per = [100 * 9.0 / (2 * sum(r.angles) + 9.0) for r in records]
    assert [float(r["smape_reported"]) for r in rows] == pytest.approx(per, abs=1e-4)
    for name in ("pred_vs_true.png", "bland_altman.png"):
        data = (tmp_path / name).read_bytes()
        assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_segmentation_gives_null_dice(records, tmp_path):
    rep = evaluate(Oracle(records, with_seg=False), records, CFG, str(tmp_path), head_name="image", make_plots=False)
    assert json.load(open(tmp_path / "report.json"))["dice_mean"] is None
    assert rep["fitted_failed_fraction"] is None and "fitted" not in rep["heads"]
    assert not (tmp_path / "pred_vs_true.png").exists()


def test_real_preprocess_and_bytes_front_end_agree(records, tmp_path):
    rep_img = evaluate(Oracle(records, offset=2.0), records, CFG, str(tmp_path / "a"), head_name="image",
                       make_plots=False)
    rep_bytes = evaluate(Oracle(records, offset=2.0, bytes_mode=True), records, None, str(tmp_path / "b"),
                         head_name="image", inputs="bytes", make_plots=False)
    assert rep_img["dice_mean"] == pytest.approx(1.0)
    assert rep_bytes["dice_mean"] == pytest.approx(1.0)
    assert rep_img["smape"] == pytest.approx(rep_bytes["smape"])
    assert rep_img["heads"]["fitted"]["n"] == rep_bytes["heads"]["fitted"]["n"]


def test_bad_inputs_raise_clear_errors(records, tmp_path):
    with pytest.raises(ValueError, match="records"):
        evaluate(Oracle(records), [], CFG, str(tmp_path), head_name="image")
    with pytest.raises(ValueError, match="inputs"):
        evaluate(Oracle(records), records, CFG, str(tmp_path), head_name="image", inputs="tensor")

    def no_reported(batch):
        return {"cobb_angles_image": np.zeros((len(batch), 3))}

    with pytest.raises(ValueError, match="cobb_angles"):
        evaluate(no_reported, records[:2], CFG, str(tmp_path), head_name="image")

    def bad_shape(batch):
        return {"cobb_angles": np.zeros((len(batch), 2))}

    with pytest.raises(ValueError, match="'cobb_angles'.*shape"):
        evaluate(bad_shape, records[:2], CFG, str(tmp_path), head_name="image")


def _save_fake_savedmodel(path, angle_offset):
    """A SavedModel with serving_default(image_bytes) -> angles = offset + 0, plus the mapping outputs."""
    import tensorflow as tf

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve(self, image_bytes):
            sizes = tf.map_fn(lambda b: tf.shape(tf.io.decode_png(b, channels=1))[:2], image_bytes,
                              fn_output_signature=tf.int32)
            n = tf.shape(image_bytes)[0]
            h = tf.cast(sizes[:, 0], tf.float32)
            w = tf.cast(sizes[:, 1], tf.float32)
            scale = tf.minimum(SIZE[0] / h, SIZE[1] / w)
            pad = tf.stack([(SIZE[0] - h * scale) / 2, (SIZE[1] - w * scale) / 2], axis=1)
            return {"cobb_angles": tf.fill([n, 3], angle_offset), "original_size": sizes,
                    "scale": scale, "padding": pad}

    m = M()
    tf.saved_model.save(m, path, signatures={"serving_default": m.serve})


def test_saved_model_front_end_uses_newest_version(records, tmp_path):
    base = tmp_path / "base"
    _save_fake_savedmodel(str(base / "1"), 10.0)
    _save_fake_savedmodel(str(base / "2"), 20.0)
    (base / "tmp-not-a-version").mkdir()
    assert resolve_saved_model_dir(str(base)) == str(base / "2")
    rep = evaluate_saved_model(str(base), records, str(tmp_path / "out"), batch_size=4, make_plots=False)
    true = [list(r.angles) for r in records]
    assert rep["smape"] == pytest.approx(_smape_by_hand([[20.0] * 3] * len(true), true))
    assert rep["source"].endswith(os.path.join("base", "2")) and rep["dice_mean"] is None
    with pytest.raises(FileNotFoundError, match="version"):
        resolve_saved_model_dir(str(tmp_path / "out"))
