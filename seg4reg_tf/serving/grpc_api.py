"""The gRPC front end: TF Serving's PredictionService and ModelService on a `PredictionCore`."""
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
from seg4reg_tf.serving.manager import ModelManager
from seg4reg_tf.serving.status import model_status
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
    """tensorflow.serving.PredictionService on a PredictionCore."""

    def __init__(self, core: PredictionCore) -> None:
        self.core = core

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        try:
            version, label = spec_version(request.model_spec)
            lv = self.core.manager.get(request.model_spec.name, version, label)
            info = self.core.signature(lv, request.model_spec.signature_name)
            outputs = self.core.predict(lv, info.name, request_inputs(info, request), list(request.output_filter),
                                        cancelled=lambda: not context.is_active())
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
            lv = self.core.manager.get(request.model_spec.name, version, label)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = lv.name
            response.model_spec.version.value = lv.version
            packed = any_pb2.Any()
            packed.Pack(lv.signature_def_map())
            response.metadata["signature_def"].CopyFrom(packed)
            return response
        except ServingError as err:
            _abort(context, err)

    def _unimplemented(self, what: str, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      f"{what} is not implemented by this server; use Predict")

    def _refuse_method(self, request, context, method: str):
        try:
            version, label = spec_version(request.model_spec)
            lv = self.core.manager.get(request.model_spec.name, version, label)
            self.core.refuse_method(lv, request.model_spec.signature_name, method)
        except ServingError as err:
            _abort(context, err)

    def Classify(self, request, context):  # noqa: N802
        self._refuse_method(request, context, "classify")

    def Regress(self, request, context):  # noqa: N802
        self._refuse_method(request, context, "regress")

    def MultiInference(self, request, context):  # noqa: N802
        self._unimplemented("MultiInference", context)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus (HandleReloadConfigRequest UNIMPLEMENTED)."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            version, label = spec_version(request.model_spec)
            return model_status(self.manager, request.model_spec.name, version, label)
        except ServingError as err:
            _abort(context, err)
