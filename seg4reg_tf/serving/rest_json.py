"""TF Serving's REST JSON <-> numpy: request bodies (row `instances` / columnar `inputs`, binary values as
`{"b64": "..."}`) to arrays of the signature's dtypes, and outputs back (string outputs named `*_bytes` as
`{"b64"}`, other strings as UTF-8 text; the NaN of the outputs in `nan_outputs` as null). Client mistakes are
ServingError INVALID_ARGUMENT (HTTP 400)."""
from __future__ import annotations

import base64
from typing import Any, Collection

import grpc
import numpy as np
import tensorflow as tf

from seg4reg_tf.serving.errors import ServingError
from seg4reg_tf.serving.tensors import np_dtype


def _bad(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def _decode_strings(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise _bad(f"{where}: binary values must be {{\"b64\": \"<base64>\"}}, got keys {sorted(value)}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as err:
            raise _bad(f"{where}: invalid base64: {err}") from None
    if isinstance(value, list):
        return [_decode_strings(v, where) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    raise _bad(f"{where}: expected a string or {{\"b64\": ...}}, got {type(value).__name__}")


def json_to_array(value: Any, dtype: tf.DType, where: str) -> np.ndarray:
    """A JSON value (nested lists) as an ndarray of the signature dtype; 400 when impossible."""
    try:
        if dtype == tf.string:
            decoded = _decode_strings(value, where)
            arr = np.empty(np.shape(decoded) if isinstance(decoded, list) else (), dtype=object)
            if isinstance(decoded, list):
                flat = np.array(decoded, dtype=object)
                if flat.shape != arr.shape:
                    raise ValueError("ragged nested lists")
                arr[...] = flat
            else:
                arr[()] = decoded
            return arr
        if _contains(value, (str, dict)):
            raise ValueError(f"expected numbers for {dtype.name}")
        return np.array(value, dtype=np_dtype(dtype))
    except ServingError:
        raise
    except (ValueError, TypeError, OverflowError) as err:
        raise _bad(f"{where}: cannot convert to a {dtype.name} tensor: {err}") from None


def _contains(value: Any, types: tuple) -> bool:
    if isinstance(value, list):
        return any(_contains(v, types) for v in value)
    return isinstance(value, types)


def array_to_json(name: str, arr: np.ndarray, nan_outputs: Collection[str] = ()) -> Any:
    """ndarray -> JSON value; string outputs named `*_bytes` as {"b64"}, others as UTF-8 text; a float output
    named in `nan_outputs` (the model's `ModelOptions.nan_outputs`) with its NaN as null (JSON has no NaN)."""
    if arr.dtype == object or arr.dtype.kind == "S":
        as_b64 = name.endswith("_bytes")

        def conv(x):
            x = x if isinstance(x, bytes) else bytes(x)
            if as_b64:
                return {"b64": base64.b64encode(x).decode("ascii")}
            return x.decode("utf-8", errors="replace")

        return np.vectorize(conv, otypes=[object])(arr).tolist() if arr.size else arr.tolist()
    if name in nan_outputs and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        values = arr.astype(np.float64).astype(object)  # Python floats
        values[~np.isfinite(arr)] = None  # JSON has no NaN: null is "no value"
        return values.tolist()
    return arr.tolist()


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and set(value) != {"b64"}


def parse_predict_body(body: Any, input_dtypes: dict[str, tf.DType]) -> tuple[dict[str, np.ndarray], bool]:
    """Row (`instances`) or columnar (`inputs`) JSON -> ({name: ndarray}, row_format)."""
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object with \"instances\" or \"inputs\"")
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise _bad("request must contain exactly one of \"instances\" (row format) or \"inputs\" (columnar)")
    names = sorted(input_dtypes)
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise _bad("\"instances\" must be a non-empty list")
        if all(_is_named(r) for r in rows):
            keys = set(rows[0])
            for i, r in enumerate(rows):
                if set(r) != keys:
                    raise _bad(f"instance {i} has inputs {sorted(r)}, instance 0 has {sorted(keys)}")
            columns = {k: [r[k] for r in rows] for k in keys}
        elif any(_is_named(r) for r in rows):
            raise _bad("\"instances\" mixes named (object) and unnamed values")
        else:
            if len(names) != 1:
                raise _bad(f"unnamed instances need a single-input signature; inputs are {names}")
            columns = {names[0]: rows}
    else:
        cols = body["inputs"]
        if _is_named(cols):
            columns = dict(cols)
        else:
            if len(names) != 1:
                raise _bad(f"unnamed \"inputs\" need a single-input signature; inputs are {names}")
            columns = {names[0]: cols}
    unknown = sorted(set(columns) - set(input_dtypes))
    if unknown:
        raise _bad(f"unknown inputs {unknown}; signature expects {names}")
    return {k: json_to_array(v, input_dtypes[k], f"input {k!r}") for k, v in columns.items()}, has_rows


def format_predict_response(outputs: dict[str, np.ndarray], row_format: bool,
                            nan_outputs: Collection[str] = ()) -> dict:
    """TF Serving's Predict answer: `{"predictions": ...}` (row format) or `{"outputs": ...}` (columnar)."""
    if not row_format:
        if len(outputs) == 1:
            (name, arr), = outputs.items()
            return {"outputs": array_to_json(name, arr, nan_outputs)}
        return {"outputs": {k: array_to_json(k, v, nan_outputs) for k, v in outputs.items()}}
    sizes = {v.shape[0] if v.ndim else None for v in outputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise _bad("row format needs every output to share the batch dimension; use columnar \"inputs\"")
    if len(outputs) == 1:
        (name, arr), = outputs.items()
        return {"predictions": array_to_json(name, arr, nan_outputs)}
    n = sizes.pop()
    as_json = {k: array_to_json(k, v, nan_outputs) for k, v in outputs.items()}
    return {"predictions": [{k: as_json[k][i] for k in outputs} for i in range(n)]}
