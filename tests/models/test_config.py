import pytest

from seg4reg_tf.models.config import ModelConfig


@pytest.mark.parametrize("key,value", [
    ("variant", "seg5reg"), ("encoder", "resnet"), ("reg_width", 0), ("reg_depth", 9), ("seg_width", -1),
    ("seg_depth", "4"), ("angle_scale", 0), ("angle_scale", float("nan")), ("head", "best"), ("cam", "gradcam++"),
    ("roi_gate", "yes"), ("gate_stop_gradient", 1), ("attention_reg", None), ("triangle", "no"),
    ("joint_warmup_epochs", -1), ("w_seg_ce", -1.0), ("w_seg_dice", "1"), ("w_reg_image", -2), ("w_reg_mask", -1),
    ("w_reg_seg", float("inf")), ("lambda_att", -0.1), ("lambda_tri", -1), ("dropout", 1.0),
    ("encoder_weights", ""), ("angle_prior", (10, 20)), ("angle_prior", (10, 20, 200)), ("reg_norm", "layer"),
    ("seg_norm", "instance"), ("reg_width", 6), ("tta", "rotate"), ("tta", True),
    ("pretrained", "yes"), ("pretrained", True), ("attention_target", "band"), ("attention_centered", True),
    ("attention_centered", "yes"),
])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ValueError, match=rf"^model\.{key}:"):
        ModelConfig(**{key: value})


@pytest.mark.parametrize("variant,head", [("reg_only", "segmentation"), ("reg_only", "mean"),
                                          ("seg4reg", "image"), ("seg4reg", "mean")])
def test_head_must_exist_in_variant(variant, head):
    with pytest.raises(ValueError, match=r"^model\.head:"):
        ModelConfig(variant=variant, head=head)


def test_loss_that_is_the_only_signal_cannot_be_zero():
    with pytest.raises(ValueError, match=r"^model\.w_reg_image:"):
        ModelConfig(variant="reg_only", w_reg_image=0)
    with pytest.raises(ValueError, match=r"^model\.w_reg_mask:"):
        ModelConfig(variant="seg4reg", w_reg_mask=0)


def test_auto_head_and_switches():
    assert ModelConfig(variant="reg_only").resolved_head == "image"
    assert ModelConfig(variant="seg4reg").resolved_head == "segmentation"
    assert ModelConfig().resolved_head == "mean"
    c = ModelConfig(variant="seg4reg")  # Seg4Reg+ switches default on but do not apply to seg4reg
    assert not (c.use_gate or c.use_attention_reg or c.use_triangle or c.joint)
    c = ModelConfig(roi_gate=False)
    assert (c.use_gate, c.use_attention_reg, c.use_triangle) == (False, True, True)
    assert ModelConfig().angle_scale == 180.0  # real angles reach 156 degrees


def test_dict_round_trip_and_unknown_key():
    c = ModelConfig(variant="seg4reg_plus", reg_width=8, angle_prior=[30, 20, 10], lambda_tri=0.25, head="image")
    d = c.to_dict()
    assert ModelConfig.from_dict(d) == c
    assert d["angle_prior"] == [30.0, 20.0, 10.0]
    with pytest.raises(ValueError, match=r"^model\.widht: unknown key"):
        ModelConfig.from_dict({"widht": 3})
