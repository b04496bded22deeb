"""Request tensors: TensorProtos of a PredictRequest decoded and checked against a signature."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from seg4reg_tf.serving.errors import first_line, invalid_argument
from seg4reg_tf.serving.signatures import SignatureInfo

MAX_TENSOR_BYTES = 1 << 30  # refuse requests whose declared tensors would exceed 1 GiB


def np_dtype(dtype: tf.DType) -> np.dtype:
    """The numpy dtype holding values of a TF dtype (object for strings)."""
    return np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)


def tensor_proto_to_ndarray(name: str, proto, expected: tf.DType) -> np.ndarray:
    """Decode a request TensorProto after checking dtype and declared size; ServingError if bad."""
    if proto.dtype != expected.as_datatype_enum:
        got = types_pb2.DataType.Name(proto.dtype) if proto.dtype in types_pb2.DataType.values() \
            else str(proto.dtype)
        raise invalid_argument(f"input {name!r}: expected dtype {types_pb2.DataType.Name(expected.as_datatype_enum)}, "
                               f"got {got}")
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise invalid_argument(f"input {name!r}: tensor shape must be fully defined, got {dims}")
    n = int(np.prod(dims, dtype=np.float64)) if dims else 1
    itemsize = 1 if expected == tf.string else expected.size
    if n * itemsize > MAX_TENSOR_BYTES:
        raise invalid_argument(f"input {name!r}: shape {dims} declares more than {MAX_TENSOR_BYTES} bytes")
    if proto.tensor_content and len(proto.tensor_content) != n * itemsize:
        raise invalid_argument(f"input {name!r}: tensor_content holds {len(proto.tensor_content)} bytes, "
                               f"shape {dims} of {expected.name} needs {n * itemsize}")
    if expected == tf.string and len(proto.string_val) not in (n, 1) and n:
        raise invalid_argument(f"input {name!r}: {len(proto.string_val)} string values for shape {dims} "
                               f"({n} elements)")
    try:
        arr = tf.make_ndarray(proto)
    except Exception as err:  # noqa: BLE001
        raise invalid_argument(f"input {name!r}: cannot parse tensor: {first_line(str(err))}") from None
    if arr.size != n:
        raise invalid_argument(f"input {name!r}: {arr.size} values for shape {dims} ({n} elements)")
    return arr


def check_input(name: str, arr: np.ndarray, info: SignatureInfo) -> None:
    """Rank and fixed dims of `arr` against the signature; ServingError INVALID_ARGUMENT if not."""
    shape = info.input_shapes[name]
    if shape is None:
        return
    if arr.ndim != len(shape):
        raise invalid_argument(f"input {name!r}: expected rank {len(shape)} (shape "
                               f"{[-1 if d is None else d for d in shape]}), got rank {arr.ndim} "
                               f"(shape {list(arr.shape)})")
    for axis, (want, got) in enumerate(zip(shape, arr.shape)):
        if want is not None and want != got:
            raise invalid_argument(f"input {name!r}: dimension {axis} must be {want}, got {got} "
                                   f"(shape {list(arr.shape)})")


def check_finite(name: str, arr: np.ndarray) -> None:
    """INVALID_ARGUMENT naming the tensor and the first batch item when a float input holds NaN or Inf."""
    if arr.dtype.kind in "fc" and arr.size and not np.all(np.isfinite(arr)):
        where = np.argwhere(~np.isfinite(arr))[0].tolist()
        item = f" (batch item {where[0]})" if arr.ndim else ""
        raise invalid_argument(f"input {name!r}: values must be finite; found NaN or Infinity at index {where}{item}")


def request_inputs(info: SignatureInfo, request) -> dict[str, np.ndarray]:
    """The named input tensors of a PredictRequest as arrays of the signature's dtypes (INVALID_ARGUMENT
    for an alias the signature lacks or an unparsable tensor)."""
    inputs = {}
    for name, proto in request.inputs.items():
        if name not in info.input_dtypes:
            raise invalid_argument(f"input tensor alias not found in signature: {name!r}; signature "
                                   f"{info.name!r} expects {sorted(info.input_dtypes)}")
        inputs[name] = tensor_proto_to_ndarray(name, proto, info.input_dtypes[name])
    return inputs
