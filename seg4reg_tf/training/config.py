"""The experiment definition: `ExperimentConfig` (data, model, train, synthetic sections) and its YAML I/O.

The generic machinery (conversion, `base:` files, `--set` overrides, typed replacement) is
`seg4reg_tf.config_machinery`; `load_config` / `save_config` / `config_from_dict` apply it to experiments.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Literal, Optional

from seg4reg_tf.config_machinery import (
    ConfigError,
    apply_overrides,
    check_fields,
    from_dict,
    read_config_dict,
    require,
    save_config,
    to_dict,
)
from seg4reg_tf.data.config import DataConfig
from seg4reg_tf.models.config import ModelConfig

__all__ = ["ConfigError", "ExperimentConfig", "SyntheticConfig", "TrainConfig", "apply_overrides", "config_from_dict",
           "from_dict", "load_config", "read_config_dict", "save_config", "to_dict"]


@dataclasses.dataclass
class TrainConfig:
    """How to train. `data.batch_size` is per replica; the global batch is that x replicas (printed when
    training starts).

    Attributes:
        epochs: number of epochs (each `steps_per_epoch` steps, or a full pass when None).
        optimizer: "sgd" | "adam" | "adamw".
        learning_rate: peak learning rate.
        momentum: SGD momentum (ignored by Adam/AdamW).
        weight_decay: Keras (decoupled, lr-scaled) weight decay; 0 = off.
        schedule: "constant" | "step" (x `step_factor` every `step_epochs`) | "cosine" (to 0 at the end).
        step_epochs, step_factor: the step schedule.
        warmup_epochs: linear learning-rate warmup from 0 over this many epochs (0 = none).
        seed: global seed (`keras.utils.set_random_seed`), also seeds the data order.
        steps_per_epoch: training steps per epoch; None = one full pass over the training split.
        val_steps: validation steps; None = the whole validation split.
        clipnorm: gradient-norm clipping (None = off).
        strategy: "default" | "mirrored" | "multiworker" (overridable on the command line).
        checkpoint_monitor: the logged metric selecting `model.keras` (minimised).
        init_weights: start from the weights of a finished run (its directory: its model.keras) or of a
            .keras file, instead of the model's initialisation: fine-tuning, e.g. at a larger
            `data.image_size` (the networks are fully convolutional; the model config must match). A path
            relative to the working directory; None = off. A resumed run continues from its backup.
        mixed_precision: the Keras dtype policy the model is built under: "float32", "mixed_float16"
            (GPU tensor cores; Keras scales the loss) or "mixed_bfloat16" (GPUs, TPUs, CPUs with AMX).
            Variables, losses, metrics and every model output stay float32, and so do exported
            signatures; a saved model reloads in float32.
        jit_compile: compile the train and test steps with XLA (for GPUs; slower on CPUs).
        fit_on: "train" = the training part of the fixed split, model.keras the best epoch by
            `checkpoint_monitor`; "all" = a refit on every labelled image of the AASCE root (the fixed
            split's validation images too, as published methods do before a test number): validation
            metrics are then on images it trains on, and model.keras is the last epoch (no selection).
        val_fold: which fifth of an AASCE root validates (0-based index % 5 == val_fold): 4 = the fixed
            split; 0-3 the other folds of a cross-validation (`benchmarks/out_of_fold.py`).
    """

    epochs: int = 30
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["constant", "step", "cosine"] = "cosine"
    step_epochs: int = 30
    step_factor: float = 0.1
    warmup_epochs: int = 0
    seed: int = 0
    steps_per_epoch: Optional[int] = None
    val_steps: Optional[int] = None
    clipnorm: Optional[float] = None
    strategy: Literal["default", "mirrored", "multiworker"] = "default"
    checkpoint_monitor: str = "val_smape"
    init_weights: Optional[str] = None
    mixed_precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    jit_compile: bool = False
    fit_on: Literal["train", "all"] = "train"
    val_fold: int = 4

    def __post_init__(self):
        check_fields(self, "train")
        require(self.epochs >= 1, "train.epochs", "a positive int", self.epochs)
        require(self.learning_rate > 0 and math.isfinite(self.learning_rate), "train.learning_rate",
               "a positive float", self.learning_rate)
        require(0.0 <= self.momentum < 1.0, "train.momentum", "a float in [0, 1)", self.momentum)
        require(self.weight_decay >= 0.0, "train.weight_decay", "a float >= 0", self.weight_decay)
        require(self.step_epochs >= 1, "train.step_epochs", "a positive int", self.step_epochs)
        require(0.0 < self.step_factor <= 1.0, "train.step_factor", "a float in (0, 1]", self.step_factor)
        require(self.warmup_epochs >= 0, "train.warmup_epochs", "an int >= 0", self.warmup_epochs)
        require(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "train.steps_per_epoch",
               "a positive int or null", self.steps_per_epoch)
        require(self.val_steps is None or self.val_steps >= 1, "train.val_steps", "a positive int or null",
               self.val_steps)
        require(self.clipnorm is None or self.clipnorm > 0, "train.clipnorm", "a positive float or null",
               self.clipnorm)
        require(bool(self.checkpoint_monitor), "train.checkpoint_monitor", "a metric name", self.checkpoint_monitor)
        require(self.init_weights is None or bool(self.init_weights), "train.init_weights",
               "a run directory, a .keras file or null", self.init_weights)
        require(self.val_fold in range(5), "train.val_fold", "an int in 0..4 (index % 5 == val_fold validates)",
                self.val_fold)


@dataclasses.dataclass
class SyntheticConfig:
    """A synthetic AASCE-format dataset that `seg4reg train` generates when `--data` is omitted."""

    n_train: int = 160
    n_test: int = 40
    seed: int = 0

    def __post_init__(self):
        check_fields(self, "synthetic")
        require(self.n_train >= 5, "synthetic.n_train", "an int >= 5 (the validation split is every 5th)",
               self.n_train)
        require(self.n_test >= 0, "synthetic.n_test", "an int >= 0", self.n_test)


@dataclasses.dataclass
class ExperimentConfig:
    """One experiment: a name, the data, model and training sections, and an optional synthetic dataset."""

    name: str = "experiment"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    synthetic: Optional[SyntheticConfig] = None

    def __post_init__(self):
        check_fields(self)
        require(bool(self.name) and "/" not in self.name, "name", "a non-empty name without '/'", self.name)


def config_from_dict(data: dict, overrides: list[str] | None = None) -> ExperimentConfig:
    """An `ExperimentConfig` from a mapping plus `section.key=value` overrides."""
    return from_dict(ExperimentConfig, apply_overrides(data, overrides))


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment YAML (following `base:`), apply `section.key=value` overrides and validate.

    Raises:
        ConfigError (a ValueError) naming the dotted key for unknown keys, wrong types, bad values.
    """
    return config_from_dict(read_config_dict(path), overrides)
