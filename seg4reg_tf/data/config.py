"""Typed configuration of the input pipeline (`data:` section of an experiment YAML)."""
from __future__ import annotations

import dataclasses
from typing import Any


def _pair(value, key: str, kind=float) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{key}: expected a pair of two numbers, got {value!r}")
    try:
        if kind is int:
            if any(isinstance(v, bool) or int(v) != v for v in value):
                raise TypeError
        return tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected a pair of {kind.__name__}s, got {value!r}") from None


def _number(value, key: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{key}: expected a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _bool(value, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    return value


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

    def __post_init__(self):
        p = "data.augment."
        self.enabled = _bool(self.enabled, p + "enabled")
        self.rotation_deg = _number(self.rotation_deg, p + "rotation_deg", 0.0, 180.0)
        self.scale_range = _pair(self.scale_range, p + "scale_range")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"{p}scale_range: expected 0 < lo <= hi, got {self.scale_range}")
        self.translate_frac = _number(self.translate_frac, p + "translate_frac", 0.0, 1.0)
        self.hflip_prob = _number(self.hflip_prob, p + "hflip_prob", 0.0, 1.0)
        self.brightness = _number(self.brightness, p + "brightness", 0.0, 1.0)
        self.contrast = _number(self.contrast, p + "contrast", 0.0, 1.0)
        self.gamma = _pair(self.gamma, p + "gamma")
        if not 0 < self.gamma[0] <= self.gamma[1]:
            raise ValueError(f"{p}gamma: expected 0 < lo <= hi, got {self.gamma}")
        self.noise_std = _number(self.noise_std, p + "noise_std", 0.0)


@dataclasses.dataclass
class DataConfig:
    """Input pipeline settings.

    Attributes:
        image_size: model input (H, W) in pixels; images are letterboxed (aspect kept, centre padding).
        clahe: apply CLAHE after letterboxing (in training and inside the SavedModel).
        clahe_clip: CLAHE clip limit (OpenCV semantics).
        clahe_tiles: CLAHE tile grid (rows, cols).
        batch_size: examples per batch.
        shuffle_buffer: shuffle buffer size (training only).
        cache: cache the decoded, preprocessed examples in memory (uint8).
        num_parallel_calls: parallel map calls; -1 means tf.data.AUTOTUNE.
        augment: `AugmentConfig`.

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
        self.image_size = _pair(self.image_size, "data.image_size", int)
        if min(self.image_size) < 16:
            raise ValueError(f"data.image_size: expected (H, W) both >= 16, got {self.image_size}")
        self.clahe = _bool(self.clahe, "data.clahe")
        self.clahe_clip = _number(self.clahe_clip, "data.clahe_clip", 0.0)
        self.clahe_tiles = _pair(self.clahe_tiles, "data.clahe_tiles", int)
        if min(self.clahe_tiles) < 1:
            raise ValueError(f"data.clahe_tiles: expected positive ints, got {self.clahe_tiles}")
        if self.clahe and any(s < 2 * t for s, t in zip(self.image_size, self.clahe_tiles)):
            raise ValueError(
                f"data.clahe_tiles: expected tiles of at least 2 pixels for image_size {self.image_size}, "
                f"got {self.clahe_tiles}")
        for key in ("batch_size", "shuffle_buffer"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"data.{key}: expected a positive int, got {v!r}")
        self.cache = _bool(self.cache, "data.cache")
        v = self.num_parallel_calls
        if isinstance(v, bool) or not isinstance(v, int) or (v < 1 and v != -1):
            raise ValueError(f"data.num_parallel_calls: expected a positive int or -1 (AUTOTUNE), got {v!r}")
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if not isinstance(self.augment, AugmentConfig):
            raise ValueError(f"data.augment: expected a mapping of augmentation settings, got {self.augment!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataConfig":
        """Build from a plain mapping (e.g. the `data:` section of a YAML file); unknown keys raise."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"data.{unknown[0]}: unknown key (expected one of {sorted(names)})")
        d = dict(d)
        if isinstance(d.get("augment"), dict):
            aug_names = {f.name for f in dataclasses.fields(AugmentConfig)}
            bad = sorted(set(d["augment"]) - aug_names)
            if bad:
                raise ValueError(f"data.augment.{bad[0]}: unknown key (expected one of {sorted(aug_names)})")
        return cls(**d)
