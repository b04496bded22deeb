"""The joint Seg4Reg+ model: S, R, CAM, ROI gate and the joint losses (all variants, one code path)."""
from __future__ import annotations

import keras
from keras import ops
from keras.src.losses.loss import scale_loss_for_distribution  # Keras' own convention, no public alias

from seg4reg_tf.config_machinery import check_image_size
from seg4reg_tf.geometry.cobb_ops import selected_angles_ops
from seg4reg_tf.models import losses as L
from seg4reg_tf.models.blocks import encoder_stride
from seg4reg_tf.models.cam import cam_attention, gradcam_attention, normalize_attention, summed_cam
from seg4reg_tf.models.config import ModelConfig
from seg4reg_tf.models.geometry_head import GeometryHead, landmark_geometry
from seg4reg_tf.models.metrics import SMAPE, PooledDice, smape_per_image_ops
from seg4reg_tf.models.preprocessing import Preprocessing
from seg4reg_tf.models.regression import RegressionNet
from seg4reg_tf.models.segmentation import SegmentationNet
from seg4reg_tf.models.upright_probe import UprightProbe


def validate_image_size(cfg: ModelConfig, image_size) -> tuple[int, int]:
    """(H, W) of `image_size` for the networks of `cfg`: `config_machinery.check_image_size` with their
    output stride (ConfigError, a ValueError, naming image_size)."""
    stride = encoder_stride(cfg.encoder, cfg.reg_depth)
    if cfg.has_segmentation:
        stride = max(stride, 2 ** cfg.seg_depth)
    return check_image_size(image_size, "image_size", stride=stride,
                            why=f"(encoder {cfg.encoder!r}, reg_depth {cfg.reg_depth}, seg_depth {cfg.seg_depth})")


SPATIAL_OUTPUTS = ("segmentation", "attention_map", "attention_logits")  # [B, h, w, ...] maps


def mean_outputs(outputs: list[dict]) -> dict:
    """The element-wise mean of output dicts with the same keys; `consistency` [B] is recomputed as
    mean_j |cobb_angles_image - cobb_angles_segmentation| of the averaged heads (not averaged)."""
    merged = {key: ops.mean(ops.stack([out[key] for out in outputs]), axis=0) for key in outputs[0]}
    if "consistency" in merged:
        merged["consistency"] = ops.mean(
            ops.abs(merged["cobb_angles_image"] - merged["cobb_angles_segmentation"]), axis=-1)
    return merged


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class Seg4RegPlus(keras.Model):
    """Joint segmentation S + Cobb angle regression R (Seg4Reg+ reconstruction: README, "What is and isn't reproduced").

    Called on {"image": float32 [B, H, W, 1] in [0, 1]} it returns a dict (keys by variant):
    `cobb_angles` [B, 3] degrees (the configured head), `cobb_angles_image` = R(x),
    `cobb_angles_segmentation` = R(s_hat) with s_hat = 1 - p(background), `segmentation`
    [B, H, W, 18] softmax, `attention_map` [B, h, w] CAM A(x) in [0, 1] (with attention_target "mask"
    also `attention_logits` [B, h, w], the summed CAM before ReLU), `consistency` [B] =
    mean_j |R(x) - R(s_hat)| degrees. reg_only: no segmentation keys; seg4reg: no image keys.
    With `model_config.tta == "flip"` inference (training falsy) averages x and its mirror.

    With `model_config.geometry_head` also `vertebra_tilts` [B, 17] degrees, `vertebra_centres`,
    `vertebra_sizes` [B, 17, 2] px, `vertebra_visible` [B, 17],
    `vertebra_landmarks` [B, 68, 2] px (model frame), `cobb_angles_geometry` [B, 3] degrees (the
    official algorithm on those vertebrae) and `end_vertebrae` int32 [B, 3, 2] (see `GeometryHead`).
    With `model_config.upright_check` also `upright_margin` [B] (> 0: the film is upright; `UprightProbe`).

    Training: `compile(optimizer=...)` then `fit` on (features, {"angles" [B, 3] degrees,
    "labels" int [B, H, W]}, and with the geometry head "landmarks" [B, 68, 2] model-frame px). `compute_loss`
    builds the joint loss (see `ModelConfig`), computing
    R(m) on the ground-truth foreground m = labels > 0, and logs every component, `smape` (of
    `cobb_angles`) and `dice` (`PooledDice`: foreground Dice pooled over the epoch). The
    non-trainable `joint_weight` (0 during warm-up, 1 after; set by `JointWarmup`) scales the joint
    terms and the gate's attention input.
    Sample weights are ignored.

    Args:
        model_config: a `ModelConfig` or its dict (read-only afterwards as `cfg`; `with_config` makes a
            changed copy, e.g. another `head` or `tta`).
        image_size: (H, W) of the (letterboxed) input; default `preprocessing.image_size`, else 512 x 256.
        load_encoder_weights: load `encoder_weights` / the pretrained ImageNet weights now (False when
            rebuilding from a saved model).
        preprocessing: the input contract (`models.preprocessing.Preprocessing`, its dict, or a
            DataConfig): what `export_model` puts in front of the network. `build_model` always sets it;
            None (a model saved without one) leaves it to the caller of the export.

    Reference: Lin et al., "Seg4Reg+: Consistency Learning between Spine Segmentation and Cobb
    Angle Regression", MICCAI 2021 (arXiv 2208.12462). The equations are our reconstruction.
    """

    def __init__(self, model_config, image_size=None, load_encoder_weights=True, preprocessing=None, **kwargs):
        kwargs.setdefault("name", "seg4reg_plus")
        super().__init__(**kwargs)
        cfg = model_config if isinstance(model_config, ModelConfig) else ModelConfig.from_dict(dict(model_config))
        self._cfg = cfg
        self.preprocessing = None if preprocessing is None else Preprocessing.of(preprocessing)
        if image_size is None:
            image_size = self.preprocessing.image_size if self.preprocessing else (512, 256)
        self.image_size = validate_image_size(cfg, image_size)
        if self.preprocessing is not None and self.preprocessing.image_size != self.image_size:
            raise ValueError(f"image_size: {self.image_size} differs from preprocessing.image_size "
                             f"{self.preprocessing.image_size}; the model's input is what its preprocessing makes")
        shape = (*self.image_size, 1)
        self.regressor = RegressionNet(
            shape, encoder=cfg.encoder, width=cfg.reg_width, depth=cfg.reg_depth, norm=cfg.reg_norm,
            angle_scale=cfg.angle_scale, angle_prior=cfg.angle_prior, dropout=cfg.dropout,
            encoder_weights=cfg.encoder_weights, pretrained=cfg.use_pretrained,
            load_weights=load_encoder_weights, name="regressor")
        self.segmenter = None
        if cfg.has_segmentation:
            self.segmenter = SegmentationNet(shape, width=cfg.seg_width, depth=cfg.seg_depth, norm=cfg.seg_norm,
                                             gate=cfg.use_gate, gate_stop_gradient=cfg.gate_stop_gradient,
                                             encoder=cfg.encoder, pretrained=cfg.use_pretrained,
                                             load_weights=load_encoder_weights, name="segmenter")
        self.geometry = None
        self.upright = UprightProbe(name="upright_probe") if cfg.upright_check else None
        if cfg.geometry_head:
            body = self.segmenter.body.output
            strides = tuple(k for k in (4, 8) if f"s{k}" in body)  # a shallow plain U-Net has fewer levels
            self.geometry = GeometryHead(context=cfg.geometry_width, strides=strides, name="geometry_head")
            self.geometry.build({k: v.shape[-1] for k, v in body.items()})
        self.joint_weight = self.add_weight(name="joint_weight", shape=(), initializer="ones", trainable=False)
        self.loss_names = self._loss_names()
        self.loss_trackers = [keras.metrics.Mean(name=n) for n in self.loss_names]
        self.smape_metric = SMAPE(name="smape")
        self.dice_metric = PooledDice(name="dice") if cfg.has_segmentation else None
        self.built = True

    # ------------------------------------------------------------------------------------------
    def _loss_names(self):
        cfg, names = self.cfg, []
        if cfg.has_segmentation:
            names += ["seg_loss", "seg_ce_loss", "seg_dice_loss"]
        if cfg.has_image_regression:
            names.append("reg_image_loss")
        if cfg.has_segmentation:
            names.append("reg_mask_loss")
        if cfg.joint:
            names.append("reg_seg_loss")
        if cfg.use_attention_reg:
            names.append("att_loss")
        if cfg.use_triangle:
            names.append("tri_loss")
        if cfg.geometry_head:
            names += ["tilt_loss", "centre_loss"] + (["angle_loss"] if cfg.w_angle > 0 else [])
        return names

    def attention(self, features):
        """CAM attention [B, h, w] in [0, 1] from R's feature map (Grad-CAM when cfg.cam='gradcam')."""
        if self.cfg.cam == "gradcam":
            return gradcam_attention(features, lambda f: self.regressor.logits(f, training=False))
        return cam_attention(features, self.regressor.kernel)

    def _image(self, inputs):
        x = inputs["image"] if isinstance(inputs, dict) else inputs
        if len(x.shape) != 4 or x.shape[-1] != 1 or tuple(x.shape[1:3]) != self.image_size:
            raise ValueError(f'features["image"]: expected float32 [B, {self.image_size[0]}, '
                             f'{self.image_size[1]}, 1] in [0, 1], got shape {tuple(x.shape)}')
        return ops.cast(x, "float32")

    def call(self, inputs, training=None):
        x = self._image(inputs)
        if self.cfg.tta != "flip" or training:
            out = self._answer(self._forward(x, training))
        else:
            # one forward pass over [x; mirror(x)]: the exported graph holds the network once
            n = ops.shape(x)[0]
            both = self._forward(ops.concatenate([x, ops.flip(x, axis=2)], axis=0), training)
            out = self._answer(self._merge_flipped({k: v[:n] for k, v in both.items()},
                                                   {k: v[n:] for k, v in both.items()}))
        if self.upright is not None:
            out["upright_margin"] = self.upright(x)
        return out

    def _merge_flipped(self, out, flipped):
        """Average the outputs on x and on its mirror (maps flipped back along the width axis 2; the
        mirror's vertebra tilts negated and centres mirrored). The geometry's Cobb angles are then
        computed once, on the averaged vertebrae (`_answer`).

        Inference only: BatchNorm uses its moving statistics, so the two halves do not interact."""
        unflipped = {k: ops.flip(v, axis=2) if k in SPATIAL_OUTPUTS else v for k, v in flipped.items()}
        if "vertebra_tilts" in unflipped:
            unflipped["vertebra_tilts"] = -unflipped["vertebra_tilts"]
            c = unflipped["vertebra_centres"]
            unflipped["vertebra_centres"] = ops.stack([self.image_size[1] - c[..., 0], c[..., 1]], axis=-1)
        return mean_outputs([out, unflipped])

    def _answer(self, out):
        """Adds the geometry's landmarks and Cobb angles, and `cobb_angles` (the configured head)."""
        if self.geometry is not None:
            out = GeometryHead.answer(out, float(self.image_size[0]))
        head = self.cfg.resolved_head
        if head == "image":
            out["cobb_angles"] = out["cobb_angles_image"]
        elif head == "segmentation":
            out["cobb_angles"] = out["cobb_angles_segmentation"]
        elif head == "geometry":
            out["cobb_angles"] = out["cobb_angles_geometry"]
        elif head == "fused":
            out["cobb_angles"] = 0.5 * (out["cobb_angles_geometry"] + out["cobb_angles_segmentation"])
        else:
            out["cobb_angles"] = 0.5 * (out["cobb_angles_image"] + out["cobb_angles_segmentation"])
        return out

    def _forward(self, x, training):
        cfg = self.cfg
        out = {}
        jw = ops.cast(self.joint_weight, "float32")
        if cfg.has_image_regression:
            f_x = self.regressor.features(x, training=training)
            ang_x = self.regressor.to_angles(self.regressor.logits(f_x, training=training))
            out["cobb_angles_image"] = ang_x
            if cfg.attention_target == "mask":
                # raw summed CAM (logit units): its loss must not pass through the ReLU of A(x)
                logits_map = summed_cam(f_x, self.regressor.kernel, centered=cfg.attention_centered)
                out["attention_logits"] = logits_map
                out["attention_map"] = normalize_attention(logits_map)
            else:
                out["attention_map"] = self.attention(f_x)
        if cfg.has_segmentation:
            gate_input = out["attention_map"] * jw if cfg.use_gate else None
            probs, feats = self.segmenter(x, attention=gate_input, training=training, return_features=True)
            if self.geometry is not None:
                out.update(self.geometry(feats, probs))
            s_hat = 1.0 - probs[..., :1]
            if not cfg.joint:  # seg4reg: two independent stages
                s_hat = ops.stop_gradient(s_hat)
            out["segmentation"] = probs
            out["cobb_angles_segmentation"] = self.regressor(s_hat, training=training)["angles"]
        if cfg.has_image_regression and cfg.has_segmentation:
            out["consistency"] = ops.mean(ops.abs(out["cobb_angles_image"] - out["cobb_angles_segmentation"]),
                                          axis=-1)
        return out

    # ------------------------------------------------------------------------------------------
    def loss_terms(self, y, y_pred, training=False):
        """Unweighted loss components (dict of scalars) and the weighted total."""
        cfg = self.cfg
        if not isinstance(y, dict) or "angles" not in y or (cfg.has_segmentation and "labels" not in y):
            need = '"angles" [B, 3]' + (' and "labels" [B, H, W]' if cfg.has_segmentation else "")
            raise ValueError(f"targets: expected a dict with {need}, got {type(y).__name__}"
                             f"{' with keys ' + str(sorted(y)) if isinstance(y, dict) else ''}")
        angles = ops.cast(y["angles"], "float32")
        if len(angles.shape) != 2 or angles.shape[-1] != 3:
            raise ValueError(f'targets["angles"]: expected float32 [B, 3] degrees, got shape {tuple(angles.shape)}')
        s = cfg.angle_scale
        t, total = {}, 0.0
        jw = ops.cast(self.joint_weight, "float32")
        if cfg.has_segmentation:
            labels = ops.cast(y["labels"], "int32")
            if len(labels.shape) != 3 or tuple(labels.shape[1:]) != self.image_size:
                raise ValueError(f'targets["labels"]: expected int32 [B, {self.image_size[0]}, '
                                 f'{self.image_size[1]}] with 0..17, got shape {tuple(labels.shape)}')
            probs = y_pred["segmentation"]
            t["seg_ce_loss"] = L.segmentation_cross_entropy(labels, probs)
            t["seg_dice_loss"] = L.soft_dice_loss(labels, probs)
            t["seg_loss"] = cfg.w_seg_ce * t["seg_ce_loss"] + cfg.w_seg_dice * t["seg_dice_loss"]
            total = total + t["seg_loss"]
            m = ops.expand_dims(ops.cast(labels > 0, "float32"), -1)
            out_m = self.regressor(m, training=training)
            t["reg_mask_loss"] = L.angle_l1_loss(angles, out_m["angles"], s)
            total = total + cfg.w_reg_mask * t["reg_mask_loss"]
        if cfg.has_image_regression:
            t["reg_image_loss"] = L.angle_l1_loss(angles, y_pred["cobb_angles_image"], s)
            total = total + cfg.w_reg_image * t["reg_image_loss"]
        if cfg.joint:
            t["reg_seg_loss"] = L.angle_l1_loss(angles, y_pred["cobb_angles_segmentation"], s)
            joint = cfg.w_reg_seg * t["reg_seg_loss"]
            if cfg.use_attention_reg:
                if cfg.attention_target == "mask":
                    target = L.pooled_mask_attention(m, y_pred["attention_logits"].shape[1:3])
                    t["att_loss"] = L.attention_bce_loss(y_pred["attention_logits"], target)
                else:
                    t["att_loss"] = L.attention_loss(y_pred["attention_map"], self.attention(out_m["features"]))
                joint = joint + cfg.lambda_att * t["att_loss"]
            if cfg.use_triangle:
                t["tri_loss"] = L.triangle_loss(y_pred["cobb_angles_image"], y_pred["cobb_angles_segmentation"], s)
                joint = joint + cfg.lambda_tri * t["tri_loss"]
            total = total + jw * joint
        if cfg.geometry_head:
            g_terms = self._geometry_loss_terms(y, y_pred)
            t.update(g_terms)
            total = total + cfg.w_tilt * g_terms["tilt_loss"] + cfg.w_centre * g_terms["centre_loss"]
            if cfg.w_angle > 0:
                t["angle_loss"] = self._angle_loss(angles, y_pred)
                total = total + cfg.w_angle * t["angle_loss"]
        return t, total

    def _angle_loss(self, angles, y_pred):
        """Mean error of the geometry head's official angles and of the fused answer, with a gradient through
        the curves' end vertebrae (`ModelConfig.w_angle`): L1 in degrees, or SMAPE in percent
        (`ModelConfig.angle_loss`)."""
        geometry = selected_angles_ops(y_pred["vertebra_landmarks"], y_pred["end_vertebrae"])
        fused = 0.5 * (geometry + ops.cast(y_pred["cobb_angles_segmentation"], "float32"))

        def error(pred):
            if self.cfg.angle_loss == "smape":
                return ops.mean(ops.cast(smape_per_image_ops(angles, pred), "float32"))
            return ops.mean(ops.abs(pred - angles))

        return 0.5 * (error(geometry) + error(fused))

    def _geometry_loss_terms(self, y, y_pred):
        """tilt_loss (degrees) and centre_loss (px) of the geometry head (`ModelConfig`)."""
        if "landmarks" not in y:
            raise ValueError('targets: the geometry head needs "landmarks" float32 [B, 68, 2] (model-frame px), '
                             f"got keys {sorted(y)}")
        lm = ops.cast(y["landmarks"], "float32")
        if len(lm.shape) != 3 or tuple(lm.shape[1:]) != (68, 2):
            raise ValueError(f'targets["landmarks"]: expected float32 [B, 68, 2], got shape {tuple(lm.shape)}')
        tilt_true, centre_true = landmark_geometry(lm)
        err = ops.cast(y_pred["vertebra_tilts"], "float32") - tilt_true
        mean_err = ops.mean(err, axis=1, keepdims=True)
        tilt_loss = ops.mean(ops.abs(err - mean_err)) + 0.25 * ops.mean(ops.abs(mean_err))
        centre_loss = ops.mean(ops.abs(ops.cast(y_pred["vertebra_centres"], "float32") - centre_true))
        return {"tilt_loss": tilt_loss, "centre_loss": centre_loss}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        terms, total = self.loss_terms(y, y_pred, training=training)
        for tracker in self.loss_trackers:
            tracker.update_state(terms[tracker.name])
        if self.losses:
            total = total + ops.sum([ops.cast(v, "float32") for v in self.losses])
        # fit() under tf.distribute sums per-replica gradients and unscales the logged loss itself:
        # like Keras' built-in losses, return the per-replica share.
        return scale_loss_for_distribution(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.smape_metric.update_state(y["angles"], y_pred["cobb_angles"])
        if self.dice_metric is not None:
            self.dice_metric.update_state(y["labels"], y_pred["segmentation"])
        return self.get_metrics_result()

    # ------------------------------------------------------------------------------------------
    @property
    def cfg(self) -> ModelConfig:
        """The model config it was built with (read-only: a changed head or tta is a new model, `with_config`)."""
        return self._cfg

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "model_config": self.cfg.to_dict(),
                "image_size": list(self.image_size),
                "preprocessing": None if self.preprocessing is None else self.preprocessing.to_dict()}

    def with_config(self, **changes) -> "Seg4RegPlus":
        """A new model built by `from_config` from `get_config()` updated by `changes` (`model_config`:
        a ModelConfig or dict, e.g. another head or tta; `preprocessing`), holding this model's weights.
        This model is left unchanged. A change of architecture fails in `set_weights`."""
        config = {**self.get_config(), **changes}
        if isinstance(config["model_config"], ModelConfig):
            config["model_config"] = config["model_config"].to_dict()
        if config["preprocessing"] is not None:
            config["preprocessing"] = Preprocessing.of(config["preprocessing"]).to_dict()
        clone = type(self).from_config(config)
        clone.set_weights(self.get_weights())
        return clone

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.setdefault("load_encoder_weights", False)
        return cls(**config)
