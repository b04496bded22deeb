"""An ensemble of trained Seg4Reg+ models: the mean of their outputs."""
from __future__ import annotations

import keras

from seg4reg_tf.models.seg4reg_plus import Seg4RegPlus, mean_outputs


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class Seg4RegEnsemble(keras.Model):
    """Averages the outputs of >= 2 `Seg4RegPlus` models (e.g. seeds of one config) for inference.

    Called like a member on {"image": float32 [B, H, W, 1] in [0, 1]}; returns the member outputs'
    element-wise mean (angles in degrees, softmax `segmentation`, `attention_map`), with `consistency`
    recomputed from the averaged heads (`mean_outputs`). Each member keeps its own head and test-time
    augmentation. Not for training.

    Args:
        members: the trained models; one variant (same outputs) and one input size (H, W).
    """

    def __init__(self, members, **kwargs):
        kwargs.setdefault("name", "seg4reg_ensemble")
        super().__init__(**kwargs)
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"members: expected at least 2 models, got {len(members)}")
        for i, member in enumerate(members):
            if not isinstance(member, Seg4RegPlus):
                raise ValueError(f"members[{i}]: expected a Seg4RegPlus, got {type(member).__name__}")
            if member.cfg.geometry_head:
                raise ValueError(f"members[{i}]: model.geometry_head is true; an ensemble averages outputs, and "
                                 "end vertebrae (indices) cannot be averaged: ship one geometry-head model")
            for field, want, got in (("image_size", members[0].image_size, member.image_size),
                                     ("model.variant", members[0].cfg.variant, member.cfg.variant),
                                     ("model.attention_target", members[0].cfg.attention_target,
                                      member.cfg.attention_target),
                                     ("model.attention_centered", members[0].cfg.attention_centered,
                                      member.cfg.attention_centered)):
                if got != want:
                    raise ValueError(f"members[{i}]: {field} {got!r} differs from members[0]'s {want!r}; "
                                     f"an ensemble averages outputs of one shape and meaning")
        self.members = members
        self.image_size = members[0].image_size
        self.built = True

    def call(self, inputs, training=None):
        return mean_outputs([member(inputs, training=training) for member in self.members])

    def get_config(self):
        return {"name": self.name, "members": [keras.saving.serialize_keras_object(m) for m in self.members]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [keras.saving.deserialize_keras_object(m) for m in config["members"]]
        return cls(**config)
