"""The gRPC front end: TF Serving's PredictionService and ModelService on a `PredictionCore`.

The servicers get what they need and nothing above it: the core, `resolve(name, version, label)`
(the manager's), a status function and the metrics."""
from __future__ import annotations

import logging

import grpc
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from seg4reg_tf.serving.core import PredictionCore
from seg4reg_tf.serving.errors import ServingError, first_line, invalid_argument
from seg4reg_tf.serving.metrics import ServingMetrics
from seg4reg_tf.serving.status import Resolve, StatusFn
from seg4reg_tf.serving.tensors import request_inputs

log = logging.getLogger("seg4reg_tf.serving")


def spec_version(spec) -> tuple[int | None, str | None]:
    """(version, label) asked for by a ModelSpec; (None, None) = the newest."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def _abort(context: grpc.ServicerContext, err: ServingError):
    context.abort(err.code, err.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService on a PredictionCore and a `resolve` of model specs."""

    def __init__(self, core: PredictionCore, resolve: Resolve, metrics: ServingMetrics | None = None) -> None:
        self.core = core
        self.resolve = resolve
        self.metrics = metrics or ServingMetrics()

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        try:
            with self.metrics.observe(request.model_spec.name, "Predict", "GRPC") as record:
                version, label = spec_version(request.model_spec)
                lv = self.resolve(request.model_spec.name, version, label)
                record.version = lv.version
                info = self.core.signature(lv, request.model_spec.signature_name)
                record.signature_name = info.name
                outputs = self.core.predict(lv, info.name, request_inputs(info, request),
                                            list(request.output_filter), cancelled=lambda: not context.is_active())
                response = predict_pb2.PredictResponse()
                response.model_spec.name = lv.name
                response.model_spec.version.value = lv.version
                response.model_spec.signature_name = info.name
                for name, arr in outputs.items():
                    response.outputs[name].CopyFrom(tf.make_tensor_proto(arr))
            return response
        except ServingError as err:
            _abort(context, err)
        except Exception as err:  # noqa: BLE001 - never crash the server
            log.exception("Predict failed")
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {first_line(str(err))}")

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            fields = list(request.metadata_field)
            if not fields:
                raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field "
                                       "(supported: 'signature_def')")
            bad = [f for f in fields if f != "signature_def"]
            if bad:
                raise invalid_argument(f"Metadata field {bad[0]!r} is not supported (supported: 'signature_def')")
            version, label = spec_version(request.model_spec)
            lv = self.resolve(request.model_spec.name, version, label)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = lv.name
            response.model_spec.version.value = lv.version
            packed = any_pb2.Any()
            packed.Pack(lv.signature_def_map())
            response.metadata["signature_def"].CopyFrom(packed)
            return response
        except ServingError as err:
            _abort(context, err)

    def _refuse_method(self, request, context, method: str):
        """Classify / Regress: every signature served here is a predict one (TF Serving's 400 answer)."""
        try:
            with self.metrics.observe(request.model_spec.name, method.capitalize(), "GRPC") as record:
                version, label = spec_version(request.model_spec)
                lv = self.resolve(request.model_spec.name, version, label)
                record.version = lv.version
                record.signature_name = request.model_spec.signature_name or "serving_default"
                self.core.refuse_method(lv, request.model_spec.signature_name, method)
        except ServingError as err:
            _abort(context, err)

    def Classify(self, request, context):  # noqa: N802
        self._refuse_method(request, context, "classify")

    def Regress(self, request, context):  # noqa: N802
        self._refuse_method(request, context, "regress")

    def MultiInference(self, request, context):  # noqa: N802
        try:
            with self.metrics.observe(request.tasks[0].model_spec.name if request.tasks else "",
                                      "MultiInference", "GRPC"):
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                   "MultiInference is not implemented by this server; use Predict")
        except ServingError as err:
            _abort(context, err)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus (HandleReloadConfigRequest UNIMPLEMENTED)."""

    def __init__(self, status: StatusFn) -> None:
        self.status = status

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            version, label = spec_version(request.model_spec)
            return self.status(request.model_spec.name, version, label)
        except ServingError as err:
            _abort(context, err)
