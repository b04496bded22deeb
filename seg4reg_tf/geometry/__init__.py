"""Geometry: the official Cobb angles, SMAPE and landmark <-> mask conversion (NumPy, float64)."""
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
from seg4reg_tf.geometry.masks import (
    N_CLASSES,
    foreground,
    implausible_vertebrae,
    label_map_to_landmarks,
    landmarks_to_label_map,
)
from seg4reg_tf.geometry.smape import angle_mae, smape, smape_per_image
