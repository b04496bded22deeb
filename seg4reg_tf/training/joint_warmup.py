"""`JointWarmup`: train S and R separately for the first epochs, then switch the joint terms on."""
from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class JointWarmup(keras.callbacks.Callback):
    """Sets `model.joint_weight` to 0 for epochs < `warmup_epochs` and to 1 afterwards.

    Derived from the epoch index at every epoch start, so a run resumed by BackupAndRestore (or
    started with `initial_epoch`) gets the right phase. A model without `joint_weight` is left alone.
    """

    def __init__(self, warmup_epochs: int):
        super().__init__()
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"model.joint_warmup_epochs: expected an int >= 0, got {warmup_epochs!r}")
        self.warmup_epochs = warmup_epochs

    @staticmethod
    def weight_for_epoch(epoch: int, warmup_epochs: int) -> float:
        return 0.0 if epoch < warmup_epochs else 1.0

    def set_phase(self, model, epoch: int) -> None:
        """`model.joint_weight` for `epoch` (0-based); a model without one is left alone."""
        var = getattr(model, "joint_weight", None)
        if var is not None:
            var.assign(self.weight_for_epoch(int(epoch), self.warmup_epochs))

    def on_epoch_begin(self, epoch, logs=None):
        self.set_phase(self.model, epoch)

    def get_config(self):
        return {"warmup_epochs": self.warmup_epochs}
