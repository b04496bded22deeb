"""An ensemble of trained Seg4Reg+ models: the mean of their outputs."""
from __future__ import annotations

import keras

from seg4reg_tf.models.seg4reg_plus import Seg4RegPlus, mean_outputs


def check_members(members, names=None, *, same_head: bool = False) -> None:
    """The one comparison of ensemble members: >= 2 `Seg4RegPlus` without a geometry head, with one
    input contract (`preprocessing`, image size included), variant and attention map; with `same_head`
    also one reported head (`model.head`). ValueError naming the member (`names[i]`, default
    "members[i]") and the field otherwise."""
    if len(members) < 2:
        raise ValueError(f"members: expected at least 2 models, got {len(members)}")
    names = list(names) if names is not None else [f"members[{i}]" for i in range(len(members))]
    for i, member in enumerate(members):
        if not isinstance(member, Seg4RegPlus):
            raise ValueError(f"{names[i]}: expected a Seg4RegPlus, got {type(member).__name__}")
        if member.cfg.geometry_head:
            raise ValueError(f"{names[i]}: model.geometry_head is true; an ensemble averages outputs, and "
                             "end vertebrae (indices) cannot be averaged: ship one geometry-head model")
    first = members[0]
    fields = {"image_size": lambda m: m.image_size, "preprocessing": lambda m: m.preprocessing,
              "model.variant": lambda m: m.cfg.variant, "model.attention_target": lambda m: m.cfg.attention_target,
              "model.attention_centered": lambda m: m.cfg.attention_centered}
    if same_head:
        fields["model.head"] = lambda m: m.cfg.resolved_head
    for i, member in enumerate(members[1:], start=1):
        for field, get in fields.items():
            want, got = get(first), get(member)
            if got == want:
                continue
            if field == "preprocessing" and want is not None and got is not None:  # name the field
                field, want, got = next((f"preprocessing.{f}", getattr(want, f), getattr(got, f))
                                        for f in want.to_dict() if getattr(want, f) != getattr(got, f))
            raise ValueError(f"{names[i]}: {field} {got!r} differs from {names[0]}'s {want!r}; the members "
                             "of an ensemble share their input and the shape and meaning of their outputs")


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class Seg4RegEnsemble(keras.Model):
    """Averages the outputs of >= 2 `Seg4RegPlus` models (e.g. seeds of one config) for inference.

    Called like a member on {"image": float32 [B, H, W, 1] in [0, 1]}; returns the member outputs'
    element-wise mean (angles in degrees, softmax `segmentation`, `attention_map`), with `consistency`
    recomputed from the averaged heads (`mean_outputs`). Each member keeps its own head and test-time
    augmentation. Not for training.

    Args:
        members: the trained models; one variant (same outputs) and one input contract (`check_members`).
    """

    def __init__(self, members, **kwargs):
        kwargs.setdefault("name", "seg4reg_ensemble")
        super().__init__(**kwargs)
        members = list(members)
        check_members(members)
        self.members = members
        self.image_size = members[0].image_size
        self.preprocessing = members[0].preprocessing  # the same for all (check_members)
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
