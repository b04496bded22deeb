"""Models: R (regression), CAM, ROI gate, S (segmentation), losses, the joint Seg4Reg+ model and its ensembles."""
from __future__ import annotations

from seg4reg_tf.models.config import ModelConfig
from seg4reg_tf.models.ensemble import Seg4RegEnsemble
from seg4reg_tf.models.gate import RoiGate
from seg4reg_tf.models.geometry_head import GeometryHead
from seg4reg_tf.models.metrics import SMAPE, AngleMAE, PooledDice
from seg4reg_tf.models.preprocessing import Preprocessing
from seg4reg_tf.models.regression import RegressionNet
from seg4reg_tf.models.seg4reg_plus import Seg4RegPlus, validate_image_size
from seg4reg_tf.models.segmentation import SegmentationNet


def build_model(cfg: ModelConfig, data=(512, 256)) -> Seg4RegPlus:
    """The joint model for `cfg`; see `Seg4RegPlus` for outputs and training.

    `data`: the input contract the model carries (`Preprocessing`, or a `DataConfig`: the one the
    training data is preprocessed with), or an (H, W) pair: `Preprocessing(image_size=(H, W))` with
    the other settings at their defaults (CLAHE on, as `DataConfig`'s).
    Add `training.JointWarmup(cfg.joint_warmup_epochs)` to `fit` callbacks to get the warm-up; without it the joint
    terms are on from the first step.
    """
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    if not isinstance(cfg, ModelConfig):
        raise ValueError(f"model: expected a ModelConfig, got {type(cfg).__name__}")
    if isinstance(data, (list, tuple)):
        data = Preprocessing(image_size=validate_image_size(cfg, data))
    return Seg4RegPlus(cfg, preprocessing=data)


__all__ = ["ModelConfig", "build_model", "Seg4RegPlus", "Seg4RegEnsemble", "RegressionNet", "SegmentationNet",
           "RoiGate", "GeometryHead", "Preprocessing", "SMAPE", "AngleMAE", "PooledDice"]
