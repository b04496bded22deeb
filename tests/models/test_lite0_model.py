"""The joint model on EfficientNet-Lite0 encoders: ImageNet weights in R and S, frozen BatchNorm,
save/reload, and the attention target "mask"."""
import keras
import numpy as np
import pytest

from seg4reg_tf.models import build_model
from seg4reg_tf.models import losses as L
from seg4reg_tf.models.efficientnet_lite import build_efficientnet_lite0, load_pretrained
from tests.fixtures import TINY_SIZE, box_spine_batch, box_spine_dataset

H, W = TINY_SIZE


def lite_config(**kw):
    from seg4reg_tf.models import ModelConfig
    return ModelConfig(**{"variant": "seg4reg_plus", "encoder": "efficientnet_lite0", "seg_width": 4,
                          "attention_target": "mask", "lambda_att": 1.0, **kw})


def _bn_layers(model):
    return [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]


def test_pretrained_is_the_default_and_reaches_r_and_s():
    cfg = lite_config()
    assert cfg.use_pretrained
    model = build_model(cfg, (H, W))
    ref = build_efficientnet_lite0((H, W, 1))
    load_pretrained(ref)
    ref_kernel = np.asarray(ref.get_layer("block9_dw_conv").kernel)
    r_kernel = np.asarray(model.regressor.encoder.get_layer("block9_dw_conv").kernel)
    s_kernel = np.asarray(model.segmenter.body.get_layer("block9_dw_conv").kernel)
    np.testing.assert_array_equal(r_kernel, ref_kernel)
    np.testing.assert_array_equal(s_kernel, ref_kernel)
    # encoders' BatchNorm frozen (inference statistics), the decoder's trains
    s_bn = _bn_layers(model.segmenter.body)
    enc_bn = _bn_layers(model.regressor.encoder) + [l for l in s_bn if not l.name.startswith("segmenter_")]
    dec_bn = [l for l in s_bn if l.name.startswith("segmenter_lite0_unet_d")]
    assert len(enc_bn) == 2 * 49 and not any(l.trainable for l in enc_bn)
    assert len(dec_bn) == 5 and all(l.trainable for l in dec_bn)


def test_from_scratch_has_other_weights_and_trainable_bn():
    model = build_model(lite_config(pretrained=False), (H, W))
    ref = build_efficientnet_lite0((H, W, 1))
    load_pretrained(ref)
    assert not np.allclose(np.asarray(model.regressor.encoder.get_layer("stem_conv").kernel),
                           np.asarray(ref.get_layer("stem_conv").kernel))
    assert all(l.trainable for l in _bn_layers(model.regressor.encoder))


def test_fit_save_reload_keeps_weights_and_frozen_statistics(tmp_path):
    model = build_model(lite_config(), (H, W))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    before = np.asarray(model.regressor.encoder.get_layer("head_bn").moving_mean).copy()
    hist = model.fit(box_spine_dataset(n=2), epochs=1, verbose=0)
    assert np.isfinite(hist.history["att_loss"][-1])
    np.testing.assert_array_equal(np.asarray(model.regressor.encoder.get_layer("head_bn").moving_mean), before)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = box_spine_batch(2)[0]
    a, b = model({"image": x}), loaded({"image": x})
    np.testing.assert_allclose(np.asarray(a["cobb_angles"]), np.asarray(b["cobb_angles"]), atol=1e-4)
    assert not any(l.trainable for l in _bn_layers(loaded.regressor.encoder))


def test_pooled_mask_attention_target_by_hand():
    mask = np.zeros((1, 8, 4, 1), "float32")
    mask[0, 0:2, 0:2] = 1.0  # one full 2x2 cell
    mask[0, 2:4, 2:3] = 1.0  # half of another
    t = np.asarray(L.pooled_mask_attention(mask, (4, 2)))
    expected = np.zeros((1, 4, 2))
    expected[0, 0, 0], expected[0, 1, 1] = 1.0, 0.5
    np.testing.assert_allclose(t, expected, atol=1e-5)


def test_pretrained_weights_rejected_for_scratch_encoders():
    from seg4reg_tf.models import ModelConfig
    with pytest.raises(ValueError, match=r"^model\.pretrained:"):
        ModelConfig(encoder="light", pretrained=True)


def test_attention_bce_loss_by_hand():
    z = np.array([[[0.0, 20.0], [-20.0, 0.0]]], "float32")
    t = np.array([[[0.5, 1.0], [0.0, 1.0]]], "float32")
    # per cell: log(1 + e^-z) + (1 - t) z -> log 2, ~0, ~0, log 2
    assert float(L.attention_bce_loss(z, t)) == pytest.approx(0.5 * np.log(2.0), abs=1e-6)


def test_mask_attention_target_needs_the_cam_head():
    from seg4reg_tf.models import ModelConfig
    with pytest.raises(ValueError, match=r"^model\.attention_target:"):
        ModelConfig(attention_target="mask", cam="gradcam")
