"""Epoch-based learning-rate schedule (constant / step / cosine, optional linear warmup)."""
from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate as a function of the optimizer step, defined in epochs.

    With `e = step / steps_per_epoch` (fractional epochs):
    - warmup (`e < warmup_epochs`): `lr * (step + 1) / (warmup_epochs * steps_per_epoch)`;
    - "constant": `lr`;
    - "step": `lr * step_factor ** floor(e / step_epochs)`;
    - "cosine": `lr * 0.5 * (1 + cos(pi * (e - warmup) / (epochs - warmup)))`, reaching 0 at the end.

    Args:
        learning_rate: peak rate. kind: "constant" | "step" | "cosine". steps_per_epoch: > 0.
        epochs: total epochs (cosine). step_epochs, step_factor: the step schedule. warmup_epochs: >= 0.
    """

    def __init__(self, learning_rate: float, kind: str = "constant", steps_per_epoch: int = 1, epochs: int = 1,
                 step_epochs: int = 30, step_factor: float = 0.1, warmup_epochs: int = 0):
        if kind not in ("constant", "step", "cosine"):
            raise ValueError(f"train.schedule: expected 'constant', 'step' or 'cosine', got {kind!r}")
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch: expected a positive int, got {steps_per_epoch!r}")
        self.learning_rate = float(learning_rate)
        self.kind = kind
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)
        self.step_epochs = int(step_epochs)
        self.step_factor = float(step_factor)
        self.warmup_epochs = int(warmup_epochs)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        spe = float(self.steps_per_epoch)
        epoch = step / spe
        lr = self.learning_rate
        if self.kind == "constant":
            rate = ops.ones_like(step) * lr
        elif self.kind == "step":
            rate = lr * ops.power(self.step_factor, ops.floor(epoch / float(self.step_epochs)))
        else:
            span = max(float(self.epochs - self.warmup_epochs), 1e-6)
            progress = ops.clip((epoch - float(self.warmup_epochs)) / span, 0.0, 1.0)
            rate = lr * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_epochs > 0:
            warm = lr * (step + 1.0) / (self.warmup_epochs * spe)
            rate = ops.where(epoch < float(self.warmup_epochs), warm, rate)
        return rate

    def get_config(self):
        return {"learning_rate": self.learning_rate, "kind": self.kind, "steps_per_epoch": self.steps_per_epoch,
                "epochs": self.epochs, "step_epochs": self.step_epochs, "step_factor": self.step_factor,
                "warmup_epochs": self.warmup_epochs}
