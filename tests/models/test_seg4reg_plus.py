import keras
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.models import Seg4RegPlus, build_model
from seg4reg_tf.training.joint_warmup import JointWarmup
from tests.fixtures import TINY_SIZE, box_spine_batch, box_spine_dataset, tiny_model_config

H, W = TINY_SIZE
VARIANTS = {
    "reg_only": dict(variant="reg_only"),
    "seg4reg": dict(variant="seg4reg"),
    "seg4reg_plus": dict(variant="seg4reg_plus"),
    "minus_attention": dict(variant="seg4reg_plus", attention_reg=False),
    "minus_gate": dict(variant="seg4reg_plus", roi_gate=False),
    "minus_triangle": dict(variant="seg4reg_plus", triangle=False),
}
# What each variant is (the paper; ModelConfig's docstring), written out here, not read from the model:
# every variant logs its total `loss` and `smape`; a segmenter S adds its loss (CE + Dice) and the `dice`
# metric, and R is then also trained on the true masks (reg_mask_loss); R on the image adds reg_image_loss;
# only the joint seg4reg_plus trains R on S's output (reg_seg_loss) and has the attention and triangle terms.
_SEG = {"seg_loss", "seg_ce_loss", "seg_dice_loss", "reg_mask_loss", "dice"}
_JOINT = _SEG | {"reg_image_loss", "reg_seg_loss", "att_loss", "tri_loss"}
EXPECTED_LOGS = {
    "reg_only": {"loss", "smape", "reg_image_loss"},  # R on the image only
    "seg4reg": {"loss", "smape"} | _SEG,  # two stages: S alone, R on true masks (R(s_hat) untrained on)
    "seg4reg_plus": {"loss", "smape"} | _JOINT,
    "minus_attention": {"loss", "smape"} | _JOINT - {"att_loss"},
    "minus_gate": {"loss", "smape"} | _JOINT,  # the gate only routes A(x) into S: no loss of its own
    "minus_triangle": {"loss", "smape"} | _JOINT - {"tri_loss"},
}
_BOTH = {"cobb_angles", "cobb_angles_image", "attention_map", "segmentation", "cobb_angles_segmentation", "consistency"}
EXPECTED_OUTPUTS = {
    "reg_only": {"cobb_angles", "cobb_angles_image", "attention_map"},
    "seg4reg": {"cobb_angles", "segmentation", "cobb_angles_segmentation"},  # no image head: no consistency
    **{name: _BOTH for name in ("seg4reg_plus", "minus_attention", "minus_gate", "minus_triangle")},
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_fits_one_step_with_documented_outputs(name):
    cfg = tiny_model_config(**VARIANTS[name])
    model = build_model(cfg, (H, W))
    # eager: the same compute_loss / compute_metrics code, without minutes of graph tracing on 2 CPUs
    # (graph mode is covered by the warm-up, overfit and gradcam tests)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    hist = model.fit(box_spine_dataset(n=2), epochs=1, verbose=0)
    logs = {k: v[-1] for k, v in hist.history.items()}
    assert set(logs) == EXPECTED_LOGS[name]
    assert all(np.isfinite(v) for v in logs.values())
    out = model({"image": box_spine_batch(2)[0]})
    assert set(out) == EXPECTED_OUTPUTS[name]
    shapes = {"cobb_angles": (2, 3), "cobb_angles_image": (2, 3), "cobb_angles_segmentation": (2, 3),
              "segmentation": (2, H, W, 18), "attention_map": (2, H // 8, W // 8), "consistency": (2,)}
    for k, v in out.items():
        assert tuple(v.shape) == shapes[k], k
    if "attention_map" in out:
        a = np.asarray(out["attention_map"])
        assert a.min() >= 0 and a.max() <= 1
    ev = model.evaluate(box_spine_dataset(n=2), verbose=0, return_dict=True)
    assert set(ev) == EXPECTED_LOGS[name]


def test_heads_consistency_and_loss_terms_by_hand():
    x, labels, angles = box_spine_batch(2)
    model = build_model(tiny_model_config(), (H, W))
    out = {k: np.asarray(v) for k, v in model({"image": x}).items()}
    np.testing.assert_allclose(out["cobb_angles"], (out["cobb_angles_image"] + out["cobb_angles_segmentation"]) / 2,
                               rtol=1e-6)
    np.testing.assert_allclose(out["consistency"],
                               np.abs(out["cobb_angles_image"] - out["cobb_angles_segmentation"]).mean(1), rtol=1e-6)
    cfg = model.cfg
    terms, total = model.loss_terms({"angles": angles, "labels": labels}, model({"image": x}), training=False)
    t = {k: float(v) for k, v in terms.items()}
    # independent recomputation of a few terms with numpy
    assert t["reg_image_loss"] == pytest.approx(np.abs(out["cobb_angles_image"] - angles).mean() / 180.0, rel=1e-5)
    assert t["tri_loss"] == pytest.approx(float(out["consistency"].mean()) / 180.0, rel=1e-5)
    m = (labels > 0).astype("float32")[..., None]
    r_m = np.asarray(model.regressor(m)["angles"])
    assert t["reg_mask_loss"] == pytest.approx(np.abs(r_m - angles).mean() / 180.0, rel=1e-5)
    expected = (t["seg_loss"] + t["reg_image_loss"] + t["reg_mask_loss"]
                + t["reg_seg_loss"] + cfg.lambda_att * t["att_loss"] + cfg.lambda_tri * t["tri_loss"])
    assert float(total) == pytest.approx(expected, rel=1e-5)
    image_head = build_model(tiny_model_config(head="image"), (H, W))
    o = image_head({"image": x})
    np.testing.assert_array_equal(np.asarray(o["cobb_angles"]), np.asarray(o["cobb_angles_image"]))


def _grad_norms(model, loss_fn, variables):
    x, labels, angles = box_spine_batch(2)
    k = model.regressor.kernel  # positive CAM weights: A(x) is non-zero, so a gradient path exists
    k.assign(np.abs(np.asarray(k)) + 0.1)
    with tf.GradientTape() as tape:
        y_pred = model({"image": x}, training=True)
        terms, total = model.loss_terms({"angles": angles, "labels": labels}, y_pred, training=True)
        loss = loss_fn(terms, total)
    grads = tape.gradient(loss, variables)
    return sum(0.0 if g is None else float(tf.reduce_sum(tf.abs(g))) for g in grads)


def test_gradient_paths_between_s_and_r():
    # seg4reg: R's mask regression never reaches S; seg4reg_plus: R(s_hat) does (joint optimisation)
    two_stage = build_model(tiny_model_config(variant="seg4reg"), (H, W))
    assert _grad_norms(two_stage, lambda t, tot: tot - t["seg_loss"], two_stage.segmenter.trainable_variables) == 0
    plus = build_model(tiny_model_config(), (H, W))
    assert _grad_norms(plus, lambda t, tot: t["reg_seg_loss"], plus.segmenter.trainable_variables) > 0
    # the gate feeds A(x) into S; by default no gradient from the seg loss flows back into R
    assert _grad_norms(plus, lambda t, tot: t["seg_loss"], plus.regressor.trainable_variables) == 0
    open_gate = build_model(tiny_model_config(gate_stop_gradient=False), (H, W))
    assert _grad_norms(open_gate, lambda t, tot: t["seg_loss"], open_gate.regressor.trainable_variables) > 0


@pytest.mark.slow
def test_warmup_switches_joint_terms_off_then_on():
    cfg = tiny_model_config(joint_warmup_epochs=1)
    model = build_model(cfg, (H, W))
    model.compile(optimizer=keras.optimizers.SGD(1e-4))
    hist = model.fit(box_spine_dataset(n=2, batch=2), epochs=2, verbose=0,
                     callbacks=[JointWarmup(cfg.joint_warmup_epochs)])
    h = hist.history
    separate = [h["seg_loss"][e] + h["reg_image_loss"][e] + h["reg_mask_loss"][e] for e in range(2)]
    joint = [h["reg_seg_loss"][e] + cfg.lambda_att * h["att_loss"][e] + cfg.lambda_tri * h["tri_loss"][e]
             for e in range(2)]
    assert h["loss"][0] == pytest.approx(separate[0], rel=1e-5)  # warm-up: joint terms contribute 0
    assert joint[0] > 0  # ... although they are computed and logged
    assert h["loss"][1] - separate[1] == pytest.approx(joint[1], rel=1e-4)
    assert joint[1] > 0
    assert float(model.joint_weight) == 1.0


@pytest.mark.slow
def test_warmup_callback_follows_epoch_index_on_resume():
    model = build_model(tiny_model_config(), (H, W))
    cb = JointWarmup(3)
    cb.set_model(model)
    for epoch, expected in ((0, 0.0), (2, 0.0), (3, 1.0), (7, 1.0), (1, 0.0)):
        cb.on_epoch_begin(epoch)
        assert float(model.joint_weight) == expected
    model.compile(optimizer="sgd")
    model.fit(box_spine_dataset(n=2), epochs=4, initial_epoch=2, verbose=0, callbacks=[JointWarmup(4)])
    assert float(model.joint_weight) == 0.0  # epochs 2 and 3 are still warm-up
    with pytest.raises(ValueError, match=r"model\.joint_warmup_epochs"):
        JointWarmup(-1)


def test_get_config_round_trip_and_keras_save_reload(tmp_path):
    cfg = tiny_model_config(lambda_tri=0.3, head="segmentation", dropout=0.1)
    model = build_model(cfg, (H, W))
    model.joint_weight.assign(0.0)
    clone = Seg4RegPlus.from_config(model.get_config())
    assert clone.cfg == cfg and clone.image_size == (H, W) and clone.get_config() == model.get_config()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, Seg4RegPlus) and loaded.cfg == cfg
    assert float(loaded.joint_weight) == 0.0
    x = box_spine_batch(2)[0]
    a, b = model({"image": x}), loaded({"image": x})
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.mark.parametrize("variant", ["reg_only", "seg4reg", "seg4reg_plus"])
def test_flip_tta_averages_the_image_and_its_mirror(variant):
    import dataclasses

    cfg = tiny_model_config(variant=variant)
    model = build_model(cfg, (H, W))
    x = box_spine_batch(2)[0]
    a = {k: np.asarray(v) for k, v in model({"image": x}, training=False).items()}
    b = {k: np.asarray(v) for k, v in model({"image": x[:, :, ::-1].copy()}, training=False).items()}
    assert not np.allclose(a["cobb_angles"], b["cobb_angles"])  # the mirror really is a second opinion
    flipped = model.with_config(model_config=dataclasses.replace(cfg, tta="flip"))  # a new model, same weights
    assert model.cfg.tta == "none" and flipped.cfg.tta == "flip"
    assert flipped.get_config() == {**model.get_config(), "model_config": flipped.cfg.to_dict()}
    c = {k: np.asarray(v) for k, v in flipped({"image": x}, training=False).items()}
    assert set(c) == set(a)
    for key in c:
        other = b[key][:, :, ::-1] if key in ("segmentation", "attention_map") else b[key]
        if key == "consistency":
            want = np.mean(np.abs(c["cobb_angles_image"] - c["cobb_angles_segmentation"]), axis=-1)
        else:
            want = 0.5 * (a[key] + other)
        np.testing.assert_allclose(c[key], want, rtol=1e-5, atol=1e-5, err_msg=key)
    train_out = flipped({"image": x}, training=True)  # training ignores tta
    assert np.asarray(train_out["cobb_angles"]).shape == (2, 3)


def test_gradcam_variant_trains():
    model = build_model(tiny_model_config(cam="gradcam"), (H, W))
    model.compile(optimizer="adam")
    logs = model.fit(box_spine_dataset(n=2), epochs=1, verbose=0).history
    assert np.isfinite(logs["att_loss"][0]) and logs["att_loss"][0] > 0
    pred = model.predict(box_spine_batch(3)[0], batch_size=2, verbose=0)
    assert pred["attention_map"].shape == (3, H // 8, W // 8) and pred["cobb_angles"].shape == (3, 3)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"^image_size: expected \(height, width\) ints >= 16, divisible by 8 "
                                         r"\(encoder 'light', reg_depth 3, seg_depth 2\), got \(60, 32\)"):
        build_model(tiny_model_config(), (60, 32))
    model = build_model(tiny_model_config(), (H, W))
    with pytest.raises(ValueError, match=r'features\["image"\]: expected float32 \[B, 64, 32, 1\]'):
        model({"image": np.zeros((1, 32, 32, 1), "float32")})
    x, labels, angles = box_spine_batch(2)
    with pytest.raises(ValueError, match=r'targets\["labels"\]: expected int32 \[B, 64, 32\]'):
        model.loss_terms({"angles": angles, "labels": labels[:, :32]}, model({"image": x}))
    with pytest.raises(ValueError, match=r"targets: expected a dict with \"angles\""):
        model.loss_terms({"labels": labels}, model({"image": x}))
    with pytest.raises(ValueError, match=r"^model: expected a ModelConfig"):
        build_model("seg4reg_plus", (H, W))


def test_segmentation_loss_terms_by_hand():
    x, labels, angles = box_spine_batch(2)
    model = build_model(tiny_model_config(variant="seg4reg"), (H, W))
    out = model({"image": x})
    terms, _ = model.loss_terms({"angles": angles, "labels": labels}, out)
    p = np.asarray(out["segmentation"], np.float64)  # [B, H, W, 18]
    g = np.eye(18)[labels]
    # soft Dice over the 17 vertebra classes, sums over batch and pixels, smooth 1e-5 (absent classes -> 1)
    inter, denom = (p * g)[..., 1:].sum(axis=(0, 1, 2)), (p + g)[..., 1:].sum(axis=(0, 1, 2))
    dice_loss = 1.0 - np.mean((2.0 * inter + 1e-5) / (denom + 1e-5))
    assert float(terms["seg_dice_loss"]) == pytest.approx(dice_loss, rel=1e-5)
    ce = -np.mean(np.log(np.take_along_axis(p, labels[..., None], axis=-1)))  # mean pixel cross-entropy
    assert float(terms["seg_ce_loss"]) == pytest.approx(ce, rel=1e-5)
    cfg = model.cfg
    assert float(terms["seg_loss"]) == pytest.approx(cfg.w_seg_ce * ce + cfg.w_seg_dice * dice_loss, rel=1e-5)


def test_centred_attention_has_no_spatial_mean_and_is_served():
    from seg4reg_tf.models.cam import normalize_attention, summed_cam

    x = box_spine_batch(2)[0]
    for centred in (False, True):
        model = build_model(tiny_model_config(attention_target="mask", attention_centered=centred), (H, W))
        out = model({"image": x})
        z = np.asarray(out["attention_logits"])
        plain = np.asarray(summed_cam(model.regressor.features(x), model.regressor.kernel))
        want = plain - plain.mean(axis=(1, 2), keepdims=True) if centred else plain
        np.testing.assert_allclose(z, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["attention_map"], normalize_attention(want), rtol=1e-4, atol=1e-5)
        assert np.allclose(z.mean(axis=(1, 2)), 0.0, atol=1e-5) == centred
