"""Geometry (NumPy, float64): the official Cobb angles, SMAPE, landmark <-> mask conversion, the letterbox,
and the Cobb angles of the vertebrae fitted to a predicted segmentation (`seg_angles`)."""
from seg4reg_tf.geometry.cobb import (
    ANGLE_NAMES,
    BRANCH_C,
    BRANCH_S_LOWER,
    BRANCH_S_UPPER,
    N_LANDMARKS,
    N_VERTEBRAE,
    VERTEBRA_NAMES,
    CobbDetails,
    cobb_angles,
    cobb_angles_details,
    pairwise_angles,
)
from seg4reg_tf.geometry.dice import vertebra_dice
from seg4reg_tf.geometry.letterbox import Letterbox
from seg4reg_tf.geometry.masks import (
    N_CLASSES,
    foreground,
    implausible_vertebrae,
    label_map_to_landmarks,
    landmarks_to_label_map,
)
from seg4reg_tf.geometry.seg_angles import SegAngles, segmentation_angles, segmentation_angles_details
from seg4reg_tf.geometry.smape import angle_mae, smape, smape_per_image

__all__ = [
    "ANGLE_NAMES",
    "BRANCH_C",
    "BRANCH_S_LOWER",
    "BRANCH_S_UPPER",
    "N_LANDMARKS",
    "N_VERTEBRAE",
    "VERTEBRA_NAMES",
    "CobbDetails",
    "cobb_angles",
    "cobb_angles_details",
    "pairwise_angles",
    "vertebra_dice",
    "Letterbox",
    "N_CLASSES",
    "foreground",
    "implausible_vertebrae",
    "label_map_to_landmarks",
    "landmarks_to_label_map",
    "SegAngles",
    "segmentation_angles",
    "segmentation_angles_details",
    "angle_mae",
    "smape",
    "smape_per_image",
]
