"""Typed configuration of the input pipeline (`data:` section of an experiment YAML)."""
from __future__ import annotations

import dataclasses

from seg4reg_tf.config_machinery import check_fields, check_input_settings, require


@dataclasses.dataclass
class AugmentConfig:
    """Training-time augmentation (one random affine + photometric jitter per image).

    Attributes:
        enabled: apply augmentation when the dataset is built with `training=True`.
        rotation_deg: rotation angle drawn uniformly from [-rotation_deg, rotation_deg] degrees.
        scale_range: isotropic scale factor drawn uniformly from [lo, hi].
        translate_frac: shift drawn uniformly from [-f, f] times the model width / height.
        hflip_prob: probability of a horizontal flip (left/right corners are swapped too).
        brightness: additive offset drawn from [-b, b] (image in [0, 1]).
        contrast: factor drawn from [1 - c, 1 + c] applied about the image mean.
        gamma: exponent drawn uniformly from [lo, hi].
        noise_std: standard deviation of additive zero-mean noise (triangular distribution, Gaussian-like).
        bit_depth_prob, bit_depth: the film as an export at fewer grey levels: with this probability the
            image is quantised to 2**b levels, b an integer drawn uniformly from [lo, hi] bits.
        jpeg_prob, jpeg_quality: the film as a lossy export (PACS, phone): with this probability the image
            is JPEG-compressed at a quality drawn uniformly from [lo, hi] (1-100) and decoded again.
    """

    enabled: bool = True
    rotation_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    translate_frac: float = 0.05
    hflip_prob: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.2
    gamma: tuple[float, float] = (0.8, 1.25)
    noise_std: float = 0.02
    bit_depth_prob: float = 0.0
    bit_depth: tuple[int, int] = (5, 8)
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 95)

    def __post_init__(self):
        check_fields(self, "data.augment")
        for key, hi in (("rotation_deg", 180.0), ("translate_frac", 1.0), ("hflip_prob", 1.0), ("brightness", 1.0),
                        ("contrast", 1.0), ("noise_std", None), ("bit_depth_prob", 1.0), ("jpeg_prob", 1.0)):
            v = getattr(self, key)
            require(v >= 0 and (hi is None or v <= hi), f"data.augment.{key}",
                    f"a number in [0, {hi}]" if hi else "a number >= 0", v)
        for key in ("scale_range", "gamma"):
            lo, hi = getattr(self, key)
            require(0 < lo <= hi, f"data.augment.{key}", "(lo, hi) with 0 < lo <= hi", getattr(self, key))
        for key, low, high in (("bit_depth", 1, 16), ("jpeg_quality", 1, 100)):
            lo, hi = getattr(self, key)
            require(all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) and low <= lo <= hi <= high,
                    f"data.augment.{key}", f"(lo, hi) ints with {low} <= lo <= hi <= {high}", getattr(self, key))


@dataclasses.dataclass
class DataConfig:
    """Input pipeline settings.

    Attributes:
        image_size: model input (H, W) in pixels; images are letterboxed (aspect kept, centre padding).
        clahe: apply CLAHE after letterboxing (in training and inside the SavedModel).
        clahe_clip: CLAHE clip limit (OpenCV semantics).
        clahe_tiles: CLAHE tile grid (rows, cols).
        batch_size: examples per batch on each replica (device); the global batch of a step is this x the
            number of replicas (`train.strategy`), printed when training starts.
        shuffle_buffer: shuffle buffer size (training only).
        cache: cache the decoded, preprocessed examples in memory (uint8).
        num_parallel_calls: parallel map calls; -1 means tf.data.AUTOTUNE.
        augment: `AugmentConfig`.

    image_size and the clahe settings are what a model built from this config carries as its input
    contract (`models.preprocessing.Preprocessing.of(data_cfg)`; the SavedModel preprocesses with it).
    The validation split is fixed (index % 5 == 4 of filenames.csv, `aasce.train_val_split`) and is
    deliberately not configurable.
    """

    image_size: tuple[int, int] = (512, 256)
    clahe: bool = True
    clahe_clip: float = 3.0
    clahe_tiles: tuple[int, int] = (8, 8)
    batch_size: int = 8
    shuffle_buffer: int = 512
    cache: bool = True
    num_parallel_calls: int = -1
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)

    def __post_init__(self):
        check_fields(self, "data")
        check_input_settings(self, "data")
        for key in ("batch_size", "shuffle_buffer"):
            require(getattr(self, key) >= 1, f"data.{key}", "a positive int", getattr(self, key))
        require(self.num_parallel_calls >= 1 or self.num_parallel_calls == -1, "data.num_parallel_calls",
                "a positive int or -1 (AUTOTUNE)", self.num_parallel_calls)
