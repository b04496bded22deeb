"""The project's real model, DataConfig and run directory through export_run / `seg4reg export`."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf import models
from seg4reg_tf.training import config as training_config
from tests.fixtures import (
    TINY_SIZE as SIZE,
)
from tests.fixtures import (
    check_signatures,
    label_encoded_jpeg,
    label_encoded_png16,
    label_map_spine,
    set_seed,
    strip_preprocessing,
    tiny_data_config,
    tiny_model_config,
)

ATTENTION = (SIZE[0] // 8, SIZE[1] // 8)  # the light encoder's stride


def _run_dir(tmp_path, name="run", seed=0, data=None, **model_kw):
    set_seed(seed)
    cfg = training_config.ExperimentConfig(
        name="tiny", data=data or tiny_data_config(clahe=True, clahe_tiles=(4, 4)), model=tiny_model_config(**model_kw))
    model = models.build_model(cfg.model, cfg.data)
    model({"image": np.zeros((1, *SIZE, 1), np.float32)})
    run = tmp_path / name
    run.mkdir()
    training_config.save_config(cfg, run / "config.yaml")
    model.save(run / "model.keras")
    _mark_finished(run)
    return run, cfg, model


def _mark_finished(run):
    """What `train` writes last: train_summary.json with the SHA-256 of the config's canonical JSON."""
    import hashlib
    import json

    canonical = json.dumps(training_config.to_dict(training_config.load_config(run / "config.yaml")),
                           sort_keys=True, default=str)
    (run / "train_summary.json").write_text(json.dumps(
        {"epochs": 1, "config_sha256": hashlib.sha256(canonical.encode()).hexdigest()}))


def _images():
    _, lab_a = label_map_spine(200, 90)
    _, lab_b = label_map_spine(150, 120, phase=0.5)
    return [label_encoded_jpeg(lab_a), label_encoded_png16(lab_b)]


@pytest.mark.numeric
def test_cli_export_real_model_matches_keras(tmp_path):
    from seg4reg_tf.cli import main
    from seg4reg_tf.data.preprocess import decode_image, preprocess

    run, cfg, model = _run_dir(tmp_path)
    base = tmp_path / "serving" / "seg4reg"
    assert main(["export", str(run), "--out", str(base), "--version", "7"]) == 0
    assert (base / "7" / "saved_model.pb").is_file()
    assert main(["export", str(run), "--out", str(base), "--version", "7"]) == 1  # never overwritten
    check_signatures(base / "7", SIZE, attention_size=ATTENTION)

    fn = tf.saved_model.load(str(base / "7")).signatures["serving_default"]
    images = _images()
    got = {k: v.numpy() for k, v in fn(image_bytes=tf.constant(images)).items()}
    batch = tf.stack([preprocess(decode_image(tf.constant(d)), cfg.data)[0] for d in images])
    ref = {k: np.asarray(v) for k, v in model({"image": batch}, training=False).items()}
    for key in ("cobb_angles", "cobb_angles_image", "cobb_angles_segmentation", "consistency", "attention_map"):
        assert key in got, key
        np.testing.assert_allclose(got[key], np.asarray(ref[key]).reshape(got[key].shape), atol=1e-4, err_msg=key)
    assert got["vertebra_labels"].shape == (2, *SIZE)
    assert np.mean(got["vertebra_labels"] != np.argmax(ref["segmentation"], axis=-1)) < 1e-3
    np.testing.assert_array_equal(got["original_size"], [[200, 90], [150, 120]])


def test_reg_only_variant_lacks_segmentation_outputs(tmp_path):
    from seg4reg_tf.export.savedmodel import export_model

    model = models.build_model(tiny_model_config(variant="reg_only"), tiny_data_config())
    model({"image": np.zeros((1, *SIZE, 1), np.float32)})
    path = export_model(model, tmp_path / "m", 1)
    # R on the image only: no segmentation, so no labels, no seg-derived angles and no consistency
    check_signatures(path, SIZE, outputs=("cobb_angles", "cobb_angles_image", "attention_map"),
                     attention_size=ATTENTION)


def test_a_run_saved_before_models_carried_their_preprocessing_exports_with_its_config(tmp_path):
    """model.keras without a contract (older runs, unpacked members): export_run takes it from config.yaml
    (CLAHE with 4 x 4 tiles here), so the SavedModel preprocesses as training did."""
    from seg4reg_tf.cli import main
    from seg4reg_tf.data.preprocess import decode_image, preprocess

    run, cfg, model = _run_dir(tmp_path)
    strip_preprocessing(run / "model.keras")
    base = tmp_path / "serving" / "seg4reg"
    assert main(["export", str(run), "--out", str(base), "--version", "1"]) == 0
    images = _images()
    got = tf.saved_model.load(str(base / "1")).signatures["serving_default"](image_bytes=tf.constant(images))
    batch = tf.stack([preprocess(decode_image(tf.constant(d)), cfg.data)[0] for d in images])
    want = np.asarray(model({"image": batch}, training=False)["cobb_angles"])
    np.testing.assert_allclose(got["cobb_angles"].numpy(), want, atol=1e-4)


def test_cli_export_missing_run(tmp_path, capsys):
    from seg4reg_tf.cli import main

    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "b"), "--version", "1"]) == 1
    assert "nope" in capsys.readouterr().err


@pytest.mark.numeric
def test_export_with_flip_tta_and_config_provenance(tmp_path):
    from seg4reg_tf.cli import main
    from seg4reg_tf.data.preprocess import decode_image, preprocess
    from seg4reg_tf.training.config import load_config

    run, cfg, model = _run_dir(tmp_path)
    base = tmp_path / "serving" / "seg4reg"
    assert main(["export", str(run), "--out", str(base), "--version", "1", "--tta", "flip"]) == 0
    exported = load_config(base / "1" / "assets.extra" / "config.yaml")
    assert exported.model.tta == "flip" and exported.data == cfg.data

    fn = tf.saved_model.load(str(base / "1")).signatures["serving_default"]
    images = _images()
    got = fn(image_bytes=tf.constant(images))["cobb_angles"].numpy()
    batch = tf.stack([preprocess(decode_image(tf.constant(d)), cfg.data)[0] for d in images])
    one = np.asarray(model({"image": batch}, training=False)["cobb_angles"])
    mirrored = np.asarray(model({"image": batch[:, :, ::-1]}, training=False)["cobb_angles"])
    np.testing.assert_allclose(got, 0.5 * (one + mirrored), atol=1e-4)
    assert np.abs(got - one).max() > 1e-4  # the graph did not just run one pass


def test_export_refuses_unfinished_and_inconsistent_runs(tmp_path, capsys):
    """Issue 12 (2): an interrupted run (backup/, no summary) or a config edited after training is
    refused with its state named; --allow-unfinished exports the best checkpoint so far and says so."""
    from seg4reg_tf.cli import main

    run, cfg, _ = _run_dir(tmp_path)
    (run / "train_summary.json").unlink()
    (run / "backup").mkdir()
    (run / "backup" / "training_metadata.json").write_text('{"epoch": 2}')
    base = tmp_path / "b"
    assert main(["export", str(run), "--out", str(base), "--version", "1"]) == 1
    err = capsys.readouterr().err
    assert "interrupted" in err and "--allow-unfinished" in err and "Traceback" not in err
    assert not (base / "1").exists()
    assert main(["export", str(run), "--out", str(base), "--version", "1", "--allow-unfinished"]) == 0
    assert "best checkpoint so far" in capsys.readouterr().err
    assert (base / "1" / "saved_model.pb").is_file()

    run2 = tmp_path / "other"
    run.rename(run2)
    import shutil
    shutil.rmtree(run2 / "backup")
    _mark_finished(run2)
    assert main(["export", str(run2), "--out", str(base), "--version", "2"]) == 0
    (run2 / "config.yaml").write_text((run2 / "config.yaml").read_text().replace("clahe: true", "clahe: false"))
    for flags in ([], ["--allow-unfinished"]):
        assert main(["export", str(run2), "--out", str(base), "--version", "3", *flags]) == 1
        assert "config.yaml is not the config the weights were trained with" in capsys.readouterr().err
    assert not (base / "3").exists()


def test_export_head_choice_makes_the_image_head_the_headline(tmp_path):
    from seg4reg_tf.cli import main
    from seg4reg_tf.training.config import load_config

    run, cfg, _ = _run_dir(tmp_path)
    assert cfg.model.resolved_head == "mean"
    base = tmp_path / "serving" / "seg4reg"
    assert main(["export", str(run), "--out", str(base), "--version", "1", "--head", "image"]) == 0
    assert load_config(base / "1" / "assets.extra" / "config.yaml").model.head == "image"
    out = tf.saved_model.load(str(base / "1")).signatures["serving_default"](image_bytes=tf.constant(_images()))
    np.testing.assert_array_equal(out["cobb_angles"].numpy(), out["cobb_angles_image"].numpy())
    assert np.abs(out["cobb_angles"].numpy() - out["cobb_angles_segmentation"].numpy()).max() > 1e-4


@pytest.mark.numeric
def test_cli_export_of_several_runs_is_their_ensemble(tmp_path, capsys):
    from seg4reg_tf.cli import main
    from seg4reg_tf.data.preprocess import decode_image, preprocess
    from seg4reg_tf.training.config import load_config

    runs = [_run_dir(tmp_path, name=f"seed{seed}", seed=seed, head="segmentation") for seed in (1, 2)]
    base = tmp_path / "serving" / "seg4reg"
    assert main(["export", *(str(run) for run, _, _ in runs), "--out", str(base), "--version", "1",
                 "--tta", "flip"]) == 0
    check_signatures(base / "1", SIZE, attention_size=ATTENTION)
    extra = base / "1" / "assets.extra"
    assert load_config(extra / "config.yaml") == load_config(extra / "ensemble" / "member_0.yaml")
    assert [load_config(extra / "ensemble" / f"member_{i}.yaml").model.tta for i in (0, 1)] == ["flip", "flip"]

    images = _images()
    got = tf.saved_model.load(str(base / "1")).signatures["serving_default"](image_bytes=tf.constant(images))
    batch = tf.stack([preprocess(decode_image(tf.constant(d)), runs[0][1].data)[0] for d in images])
    mirrored = batch[:, :, ::-1]
    each = [0.5 * (np.asarray(m({"image": batch}, training=False)["cobb_angles_segmentation"])
                   + np.asarray(m({"image": mirrored}, training=False)["cobb_angles_segmentation"]))
            for _, _, m in runs]
    assert np.abs(each[0] - each[1]).max() > 1e-3
    np.testing.assert_allclose(got["cobb_angles"].numpy(), 0.5 * (each[0] + each[1]), atol=1e-4)

    assert main(["export", *(str(run) for run, _, _ in runs), "--out", str(base), "--version", "3",
                 "--tta", "flip", "--weights", "float16"]) == 0
    stored = tf.train.load_checkpoint(str(base / "3" / "variables" / "variables")).get_variable_to_dtype_map()
    assert {d for d in stored.values() if d.is_floating} == {tf.float16}
    half = tf.saved_model.load(str(base / "3")).signatures["serving_default"](image_bytes=tf.constant(images))
    np.testing.assert_allclose(half["cobb_angles"].numpy(), got["cobb_angles"].numpy(), atol=0.05)

    other, _, _ = _run_dir(tmp_path, name="other_data", data=tiny_data_config(clahe=False), head="segmentation")
    assert main(["export", str(runs[0][0]), str(other), "--out", str(base), "--version", "2"]) == 1
    err = capsys.readouterr().err
    assert f"{other}: preprocessing.clahe False differs from {runs[0][0]}'s True" in err and "Traceback" not in err
    image_head, _, _ = _run_dir(tmp_path, name="image_head", head="image")
    assert main(["export", str(runs[0][0]), str(image_head), "--out", str(base), "--version", "2"]) == 1
    assert f"{image_head}: model.head 'image' differs from {runs[0][0]}'s 'segmentation'" in capsys.readouterr().err
    assert not (base / "2").exists()
