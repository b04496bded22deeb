"""Signatures of a SavedModel version: SignatureDefs read from `saved_model.pb`, input dtypes / shapes."""
from __future__ import annotations

import dataclasses

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from seg4reg_tf import fileio
from seg4reg_tf.export.layout import SAVED_MODEL_FILE

_INIT_OP_KEY = "__saved_model_init_op"


@dataclasses.dataclass
class SignatureInfo:
    """One signature: its SignatureDef proto and input dtypes / shapes (None = unknown dim)."""

    name: str
    proto: meta_graph_pb2.SignatureDef
    input_dtypes: dict[str, tf.DType]
    input_shapes: dict[str, tuple[int | None, ...] | None]
    output_dtypes: dict[str, tf.DType]

    @property
    def batchable(self) -> bool:
        """All inputs have a known rank >= 1 and a free leading dimension."""
        return all(s is not None and len(s) >= 1 and s[0] is None for s in self.input_shapes.values())


def _shape_of(info: meta_graph_pb2.TensorInfo) -> tuple[int | None, ...] | None:
    if info.tensor_shape.unknown_rank:
        return None
    return tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)


def read_signature_defs(version_dir: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """SignatureDefs of `version_dir/saved_model.pb` (first MetaGraph), without the init op."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(fileio.read_bytes(fileio.join(version_dir, SAVED_MODEL_FILE)))
    if not saved.meta_graphs:
        raise ValueError(f"{version_dir}/saved_model.pb: no MetaGraph")
    return {k: v for k, v in saved.meta_graphs[0].signature_def.items() if k != _INIT_OP_KEY}


def signature_info(name: str, sig: meta_graph_pb2.SignatureDef) -> SignatureInfo:
    """The SignatureInfo of one SignatureDef."""
    return SignatureInfo(
        name, sig,
        {k: tf.dtypes.as_dtype(v.dtype) for k, v in sig.inputs.items()},
        {k: _shape_of(v) for k, v in sig.inputs.items()},
        {k: tf.dtypes.as_dtype(v.dtype) for k, v in sig.outputs.items()},
    )
