"""GetModelStatus answers (TF Serving's ModelService), shared by the gRPC and REST front ends."""
from __future__ import annotations

import grpc
from tensorflow_serving.apis import get_model_status_pb2

from seg4reg_tf.serving.errors import ServingError
from seg4reg_tf.serving.manager import ModelManager


def model_status(manager: ModelManager, name: str, version: int | None = None,
                 label: str | None = None) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatusResponse for all loaded (and failed) versions, or for one version."""
    if name != manager.config.model_name:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name!r}")
    if label is not None:
        version = manager.get(name, None, label).version
    response = get_model_status_pb2.GetModelStatusResponse()
    loaded, failed = manager.versions(), manager.failed()
    states = {v: ("AVAILABLE", "") for v in loaded}
    states.update({v: ("END", e) for v, e in failed.items() if v not in loaded})
    if version is not None:
        if version not in states:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find version {version} of model {name!r}; "
                               f"loaded versions: {sorted(loaded)}")
        states = {version: states[version]}
    if not states:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name!r}")
    for v in sorted(states, reverse=True):
        state, error = states[v]
        entry = response.model_version_status.add()
        entry.version = v
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
        if error:
            entry.status.error_code = 13  # INTERNAL (tensorflow.error.Code)
            entry.status.error_message = error
    return response
