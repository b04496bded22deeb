"""Client for TF Serving (or `seg4reg serve`) over gRPC or REST.

    client = PredictClient("localhost:8500")                 # gRPC
    client = PredictClient("localhost:8501", rest=True)      # REST
    out = client.predict({"image_bytes": [png_bytes]}, output_filter=["cobb_angles"])
    out["cobb_angles"]  # np.ndarray float32 [1, 3] degrees

gRPC messages up to 256 MiB are allowed both ways (the default 4 MiB breaks at batch 2 with
float masks); the real TF Serving needs no flag for large responses, but proxies in between may.
List inputs are cast to the dtype the signature declares (fetched once via GetModelMetadata);
numpy arrays are sent as they are.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

MAX_MESSAGE_BYTES = 256 << 20


class ServingClientError(RuntimeError):
    """A failed call: `code` is the gRPC status name (or HTTP status for REST), `message` the server's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _dtype_from_name(name: str) -> tf.DType:
    return tf.dtypes.as_dtype(types_pb2.DataType.Value(name))


class PredictClient:
    """Predict / metadata / status against one model (name, optional version, signature)."""

    def __init__(self, target: str, *, rest: bool = False, model_name: str = "seg4reg",
                 version: int | None = None, signature: str = "serving_default", timeout: float = 60) -> None:
        if not target:
            raise ValueError("target: expected 'host:port' (or an http:// URL for REST)")
        if version is not None and (not isinstance(version, int) or version < 0):
            raise ValueError(f"version: expected a non-negative int or None, got {version!r}")
        self.target, self.rest, self.model_name = target, rest, model_name
        self.version, self.signature, self.timeout = version, signature, timeout
        self._input_dtypes: dict[str, tf.DType] | None = None
        self._output_dtypes: dict[str, tf.DType] | None = None
        if rest:
            base = target if target.startswith(("http://", "https://")) else f"http://{target}"
            path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version is not None else "")
            self._url = base.rstrip("/") + path
        else:
            options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                       ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
            self._channel = grpc.insecure_channel(target, options=options)
            self._predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)

    # -- public API ------------------------------------------------------------------------------
    def predict(self, inputs: dict[str, Any], output_filter: list[str] | None = None) -> dict[str, np.ndarray]:
        """`{input_name: list | ndarray}` -> `{output_name: ndarray}` (batch first)."""
        if not isinstance(inputs, dict) or not inputs:
            raise ValueError("inputs: expected a non-empty dict {input_name: list or np.ndarray}")
        arrays = self._to_arrays(inputs)
        if self.rest:
            return self._rest_predict(arrays, output_filter)
        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec)
        request.model_spec.signature_name = self.signature
        for name, arr in arrays.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(arr))
        request.output_filter.extend(output_filter or [])
        response = self._call(self._predict_stub.Predict, request)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def metadata(self) -> dict:
        """`{"model_spec": {...}, "metadata": {"signature_def": {"signature_def": {...}}}}` (TF Serving JSON)."""
        if self.rest:
            return self._http("GET", self._url + "/metadata")
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._fill_spec(request.model_spec)
        response = self._call(self._predict_stub.GetModelMetadata, request)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sigs)
        return {
            "model_spec": {"name": response.model_spec.name, "signature_name": "",
                           "version": str(response.model_spec.version.value)},
            "metadata": {"signature_def": json_format.MessageToDict(sigs, preserving_proto_field_name=True)},
        }

    def status(self) -> dict:
        """`{"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {...}}]}`."""
        if self.rest:
            return self._http("GET", self._url)
        request = get_model_status_pb2.GetModelStatusRequest()
        self._fill_spec(request.model_spec)
        response = self._call(self._model_stub.GetModelStatus, request)
        return json_format.MessageToDict(response, always_print_fields_with_no_presence=True,
                                         preserving_proto_field_name=True)

    def close(self) -> None:
        if not self.rest:
            self._channel.close()

    def __enter__(self) -> "PredictClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------------
    def _fill_spec(self, spec) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise ServingClientError(err.code().name, err.details() or "") from None

    def _http(self, method: str, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            try:
                message = json.loads(err.read()).get("error", "")
            except ValueError:
                message = str(err)
            raise ServingClientError(str(err.code), message) from None
        except urllib.error.URLError as err:
            raise ServingClientError("UNAVAILABLE", str(err.reason)) from None

    def _signature_dtypes(self) -> tuple[dict[str, tf.DType], dict[str, tf.DType]]:
        if self._input_dtypes is None:
            sigs = self.metadata()["metadata"]["signature_def"].get("signature_def", {})
            if self.signature not in sigs:
                raise ServingClientError("NOT_FOUND", f"signature {self.signature!r} not served; "
                                         f"available: {sorted(sigs)}")
            sig = sigs[self.signature]
            self._input_dtypes = {k: _dtype_from_name(v["dtype"]) for k, v in sig.get("inputs", {}).items()}
            self._output_dtypes = {k: _dtype_from_name(v["dtype"]) for k, v in sig.get("outputs", {}).items()}
        return self._input_dtypes, self._output_dtypes

    def _to_arrays(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for name, value in inputs.items():
            if isinstance(value, np.ndarray):
                out[name] = value
                continue
            dtype = self._signature_dtypes()[0].get(name)
            if dtype == tf.string:
                arr = np.empty(np.shape(value), dtype=object)
                arr[...] = np.array(value, dtype=object)
                out[name] = arr
            elif dtype is not None:
                out[name] = np.asarray(value, dtype=dtype.as_numpy_dtype)
            else:
                out[name] = np.asarray(value)  # unknown input: let the server say so
        return out

    def _rest_predict(self, arrays: dict[str, np.ndarray], output_filter: list[str] | None) -> dict:
        def to_json(arr: np.ndarray):
            if arr.dtype == object or arr.dtype.kind == "S":
                return np.vectorize(lambda b: {"b64": base64.b64encode(bytes(b)).decode("ascii")},
                                    otypes=[object])(arr).tolist() if arr.size else arr.tolist()
            return arr.tolist()

        body = {"signature_name": self.signature, "inputs": {k: to_json(v) for k, v in arrays.items()}}
        result = self._http("POST", self._url + ":predict", body)["outputs"]
        _, output_dtypes = self._signature_dtypes()
        if not isinstance(result, dict) or set(result) - set(output_dtypes):
            (only,) = output_dtypes  # single-output signature: TF Serving returns the bare value
            result = {only: result}
        out = {}
        for name, value in result.items():
            if output_filter and name not in output_filter:
                continue
            dtype = output_dtypes[name]
            if dtype == tf.string:
                def dec(x):
                    return base64.b64decode(x["b64"]) if isinstance(x, dict) else x.encode("utf-8")
                out[name] = _map_nested(value, dec)
            else:
                out[name] = np.asarray(value, dtype=dtype.as_numpy_dtype)
        if output_filter:
            missing = sorted(set(output_filter) - set(out))
            if missing:
                raise ServingClientError("400", f"output_filter names unknown outputs {missing}")
        return out


def _map_nested(value: Any, fn) -> np.ndarray:
    def rec(v):
        return [rec(x) for x in v] if isinstance(v, list) else fn(v)

    mapped = rec(value)
    arr = np.empty(np.shape(mapped) if isinstance(mapped, list) else (), dtype=object)
    arr[...] = np.array(mapped, dtype=object) if isinstance(mapped, list) else mapped
    return arr
