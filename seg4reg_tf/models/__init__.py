"""Models: R (regression), CAM, ROI gate, S (segmentation), losses, the joint Seg4Reg+ model and its ensembles."""
from __future__ import annotations

from seg4reg_tf.models.config import ModelConfig
from seg4reg_tf.models.ensemble import Seg4RegEnsemble
from seg4reg_tf.models.gate import RoiGate
from seg4reg_tf.models.geometry_head import GeometryHead
from seg4reg_tf.models.metrics import SMAPE, AngleMAE, PooledDice
from seg4reg_tf.models.regression import RegressionNet
from seg4reg_tf.models.seg4reg_plus import Seg4RegPlus
from seg4reg_tf.models.segmentation import SegmentationNet
from seg4reg_tf.models.warmup import JointWarmup


def build_model(cfg: ModelConfig, image_size=(512, 256)) -> Seg4RegPlus:
    """The joint model for `cfg` at input size (H, W); see `Seg4RegPlus` for outputs and training.

    Add `JointWarmup(cfg.warmup_epochs)` to `fit` callbacks to get the warm-up; without it the joint
    terms are on from the first step.
    """
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    if not isinstance(cfg, ModelConfig):
        raise ValueError(f"model: expected a ModelConfig, got {type(cfg).__name__}")
    return Seg4RegPlus(cfg, image_size=image_size)


__all__ = ["ModelConfig", "build_model", "Seg4RegPlus", "Seg4RegEnsemble", "RegressionNet", "SegmentationNet",
           "RoiGate", "GeometryHead", "JointWarmup", "SMAPE", "AngleMAE", "PooledDice"]
