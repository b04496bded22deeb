"""GetModelStatus answers (TF Serving's ModelService), shared by the gRPC and REST front ends.

A version is AVAILABLE only once loaded and warmed up; while that runs it is LOADING (START before).
"""
from __future__ import annotations

from typing import Callable

import grpc
from tensorflow_serving.apis import get_model_status_pb2

from seg4reg_tf.serving.errors import ServingError
from seg4reg_tf.serving.versions import LoadedVersion

# what the front ends are given (the manager's, bound by the server):
# resolve(name, version, label) -> the AVAILABLE LoadedVersion; ServingError NOT_FOUND / INVALID_ARGUMENT
Resolve = Callable[[str, "int | None", "str | None"], LoadedVersion]
# status(name, version, label) -> GetModelStatusResponse (`model_status` bound to the manager)
StatusFn = Callable[[str, "int | None", "str | None"], get_model_status_pb2.GetModelStatusResponse]
# (model name) -> {version: (state, error)}; ServingError NOT_FOUND for an unknown model
StatesFn = Callable[[str], dict[int, tuple[str, str]]]
# (model name, label) -> version; ServingError INVALID_ARGUMENT for an unknown label
LabelFn = Callable[[str, str], int]


def model_status(states: StatesFn, label_version: LabelFn, name: str, version: int | None = None,
                 label: str | None = None) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatusResponse for every known version of model `name` (newest first), or for one."""
    known = states(name)
    if label is not None:
        version = label_version(name, label)
    if version is not None:
        if version not in known:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find version {version} of model {name!r}; "
                               f"known versions: {sorted(known)}")
        known = {version: known[version]}
    if not known:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name!r}")
    response = get_model_status_pb2.GetModelStatusResponse()
    for v in sorted(known, reverse=True):
        state, error = known[v]
        entry = response.model_version_status.add()
        entry.version = v
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
        if error:
            entry.status.error_code = 13  # INTERNAL (tensorflow.error.Code)
            entry.status.error_message = error
    return response
