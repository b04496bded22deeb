"""`Seg4RegHyperModel`: a Keras Tuner hypermodel whose trials are experiment configs.

Every hyperparameter is a typed change of a base `ExperimentConfig` (`Seg4RegHyperModel.changes(values)`,
applied by `config_machinery.replace_paths`), so a trial is exactly the config `config_for(values)`;
datasets are built per trial in `fit` because the input size (and augmentation) is tuned.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Optional

import keras
import keras_tuner

from seg4reg_tf.config_machinery import check_fields, check_image_size, replace_paths
from seg4reg_tf.training.config import ExperimentConfig

OBJECTIVE = "val_smape"

# hyperparameter name -> what it sets (documentation; `changes` does the mapping)
HP_KEYS = {
    "learning_rate": "train.learning_rate (log-uniform)",
    "schedule": "train.schedule",
    "lambda_att": "model.lambda_att (log-uniform; seg4reg_plus with attention_reg)",
    "lambda_tri": "model.lambda_tri (log-uniform; seg4reg_plus with triangle)",
    "joint_warmup_epochs": "model.joint_warmup_epochs (seg4reg_plus; < train.epochs)",
    "reg_width": "model.reg_width",
    "seg_width": "model.seg_width (variants with S)",
    "image_size": "data.image_size, as 'HxW'",
    "augment_strength": "data.augment rotation_deg, translate_frac and scale_range spread x strength",
}
_PATHS = {"learning_rate": "train.learning_rate", "schedule": "train.schedule", "lambda_att": "model.lambda_att",
          "lambda_tri": "model.lambda_tri", "joint_warmup_epochs": "model.joint_warmup_epochs",
          "reg_width": "model.reg_width", "seg_width": "model.seg_width"}


def _fail(key: str, expected: str, got) -> ValueError:
    return ValueError(f"space.{key}: expected {expected}, got {got!r}")


@dataclasses.dataclass
class SearchSpace:
    """The tuned ranges. A range `(lo, hi)` with lo == hi, or a choice list of one value, or null
    (None) / an empty list leaves that setting at the base config's value (not tuned).

    Attributes:
        learning_rate: (lo, hi) peak learning rate, log-uniform.
        schedules: choices of train.schedule ("constant" | "step" | "cosine").
        lambda_att, lambda_tri: (lo, hi) loss weights, log-uniform (lo > 0).
        joint_warmup_epochs: (lo, hi) epochs before the joint terms switch on; hi is capped at
            train.epochs - 1.
        reg_widths, seg_widths: choices of model.reg_width / model.seg_width.
        image_sizes: choices of data.image_size (H, W); each must be divisible by the model strides.
        augment_strength: (lo, hi) factor on the base augmentation's rotation, translation and scale
            spread (0 = no geometric augmentation, 1 = the base config).
    """

    learning_rate: Optional[tuple[float, float]] = (1e-4, 1e-2)
    schedules: Optional[tuple[str, ...]] = ("constant", "cosine")
    lambda_att: Optional[tuple[float, float]] = (0.01, 1.0)
    lambda_tri: Optional[tuple[float, float]] = (0.05, 2.0)
    joint_warmup_epochs: Optional[tuple[int, int]] = (0, 5)
    reg_widths: Optional[tuple[int, ...]] = (8, 16, 32)
    seg_widths: Optional[tuple[int, ...]] = (8, 16)
    image_sizes: Optional[tuple[tuple[int, int], ...]] = ((256, 128), (384, 192), (512, 256))
    augment_strength: Optional[tuple[float, float]] = (0.0, 2.0)

    def __post_init__(self):
        check_fields(self, "space")
        for key in ("learning_rate", "lambda_att", "lambda_tri"):
            r = getattr(self, key)
            if r is not None and not (0 < r[0] <= r[1] and math.isfinite(r[1])):
                raise _fail(key, "(lo, hi) with 0 < lo <= hi (log scale)", r)
        if self.augment_strength is not None and not 0 <= self.augment_strength[0] <= self.augment_strength[1]:
            raise _fail("augment_strength", "(lo, hi) with 0 <= lo <= hi", self.augment_strength)
        w = self.joint_warmup_epochs
        if w is not None and not 0 <= w[0] <= w[1]:
            raise _fail("joint_warmup_epochs", "(lo, hi) ints with 0 <= lo <= hi", w)
        for s in self.schedules or ():
            if s not in ("constant", "step", "cosine"):
                raise _fail("schedules", "choices among 'constant', 'step', 'cosine'", s)
        for key in ("reg_widths", "seg_widths"):
            for v in getattr(self, key) or ():
                if v < 1:
                    raise _fail(key, "positive ints", v)
        for i, hw in enumerate(self.image_sizes or ()):
            check_image_size(hw, f"space.image_sizes[{i}]")  # the strides of the model: Seg4RegHyperModel


def size_name(hw) -> str:
    """(H, W) -> "HxW" (Keras Tuner choices must be scalars)."""
    return f"{int(hw[0])}x{int(hw[1])}"


def parse_size(name: str) -> tuple[int, int]:
    """"HxW" -> (H, W)."""
    h, w = str(name).lower().split("x")
    return int(h), int(w)


class Seg4RegHyperModel(keras_tuner.HyperModel):
    """Hypermodel over `base` (an `ExperimentConfig`) trained on the fixed split of `data_root`.

    Args:
        base: the base experiment; untuned settings (variant, epochs, batch size, ...) come from it.
        data_root: AASCE-format root (split "training"; index % 5 == 4 validates).
        space: `SearchSpace` (default ranges when None). Settings that do not apply to the base
            variant (lambda_att for reg_only, ...) are not tuned.
        verbose: Keras progress-bar setting for each trial's `fit`.
    """

    def __init__(self, base: ExperimentConfig, data_root: str, space: SearchSpace | None = None, *,
                 verbose: int | str = "auto", replicas: int = 1):
        super().__init__(name="seg4reg")
        self.replicas = int(replicas)  # of the tuner's distribution strategy: global batch = batch_size x replicas
        from seg4reg_tf.data.sources import training_splits
        from seg4reg_tf.models.seg4reg_plus import validate_image_size

        self.base = base
        self.data_root = data_root
        self.space = space or SearchSpace()
        self.verbose = verbose
        self.train_split, self.val_split = training_splits(data_root, val_fold=base.train.val_fold)
        m, sp = base.model, self.space
        # check the choices against the base model now, naming the offending setting
        for hw in sp.image_sizes or ():
            try:
                validate_image_size(m, hw)
            except ValueError as err:
                raise ValueError(f"space.image_sizes: {size_name(hw)} does not fit model {m.variant!r}: "
                                 f"{err}") from None
        for key, norm, name in (("reg_widths", m.reg_norm, "reg_width"), ("seg_widths", m.seg_norm, "seg_width")):
            for v in getattr(sp, key) or ():
                if norm == "group" and v % 4:
                    raise ValueError(f"space.{key}: {v} is not a multiple of 4 (model.{name.replace('width', 'norm')}"
                                     f"='group')")

    # -- the search space ------------------------------------------------------------------------
    def declare(self, hp: keras_tuner.HyperParameters) -> dict:
        """Register this space's hyperparameters on `hp`; returns {name: value} for the current trial."""
        sp, m, tc = self.space, self.base.model, self.base.train
        out = {}

        def rng_float(name, r, log):
            if r is not None and r[0] < r[1]:
                out[name] = hp.Float(name, float(r[0]), float(r[1]), sampling="log" if log else "linear")

        def choice(name, values, conv=lambda v: v):
            values = list(dict.fromkeys(conv(v) for v in (values or ())))
            if len(values) > 1:
                out[name] = hp.Choice(name, values)

        rng_float("learning_rate", sp.learning_rate, True)
        choice("schedule", sp.schedules)
        if m.use_attention_reg:
            rng_float("lambda_att", sp.lambda_att, True)
        if m.use_triangle:
            rng_float("lambda_tri", sp.lambda_tri, True)
        if m.joint and sp.joint_warmup_epochs is not None:
            lo, hi = sp.joint_warmup_epochs[0], min(sp.joint_warmup_epochs[1], tc.epochs - 1)
            if lo < hi:
                out["joint_warmup_epochs"] = hp.Int("joint_warmup_epochs", int(lo), int(hi))
        choice("reg_width", sp.reg_widths, int)
        if m.has_segmentation:
            choice("seg_width", sp.seg_widths, int)
        choice("image_size", sp.image_sizes, size_name)
        if self.base.data.augment.enabled:
            rng_float("augment_strength", sp.augment_strength, False)
        return out

    def changes(self, values: dict) -> dict[str, Any]:
        """Typed `{"section.key": value}` changes of the base config for hyperparameter `values`
        (keys "tuner/..." of Hyperband are ignored; an unknown name raises)."""
        out = {}
        for name, v in values.items():
            if name.startswith("tuner/"):
                continue
            if name in _PATHS:
                out[_PATHS[name]] = v
            elif name == "image_size":
                out["data.image_size"] = parse_size(v)
            elif name == "augment_strength":
                a, s = self.base.data.augment, float(v)
                lo, hi = a.scale_range
                out.update({"data.augment.rotation_deg": min(180.0, a.rotation_deg * s),
                            "data.augment.translate_frac": min(1.0, a.translate_frac * s),
                            "data.augment.scale_range": (max(0.05, 1 - (1 - lo) * s), 1 + (hi - 1) * s)})
            else:
                raise ValueError(f"hyperparameter {name!r}: not one of {', '.join(HP_KEYS)}")
        return out

    def config_for(self, values: dict) -> ExperimentConfig:
        """The experiment config of a trial: a copy of the base config with `changes(values)` applied."""
        return replace_paths(copy.deepcopy(self.base), self.changes(values))

    def steps_per_epoch(self, cfg: ExperimentConfig) -> int:
        return cfg.train.steps_per_epoch or math.ceil(self.train_split.count / (cfg.data.batch_size * self.replicas))

    # -- keras_tuner.HyperModel --------------------------------------------------------------------
    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """The compiled model of the trial's config (`training.train.compile_model`)."""
        from seg4reg_tf.training.train import compile_model

        cfg = self.config_for(self.declare(hp))
        keras.utils.set_random_seed(cfg.train.seed)
        return compile_model(cfg, self.steps_per_epoch(cfg))

    def fit(self, hp, model, *args, callbacks=None, epochs=None, initial_epoch=0, verbose=None, **kwargs):
        """Train `model` on datasets built for this trial's config (its input size and augmentation).

        `epochs` / `initial_epoch` (Hyperband's budget) default to train.epochs / 0. Returns the History.
        """
        from seg4reg_tf.training.joint_warmup import JointWarmup
        from seg4reg_tf.training.train import build_datasets

        cfg = self.config_for(self.declare(hp))
        keras.utils.set_random_seed(cfg.train.seed)
        train_ds, val_ds = build_datasets(cfg, self.train_split, self.val_split, cfg.data.batch_size * self.replicas)
        cbs = [JointWarmup(cfg.model.joint_warmup_epochs)] + list(callbacks or ())
        return model.fit(train_ds, epochs=epochs or cfg.train.epochs, initial_epoch=initial_epoch,
                         steps_per_epoch=cfg.train.steps_per_epoch, validation_data=val_ds, callbacks=cbs,
                         verbose=self.verbose if verbose is None else verbose, shuffle=False)
