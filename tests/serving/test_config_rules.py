"""One owner per rule: each setting of `seg4reg serve` has one default and one check, and every path to it
(the Python `ServerConfig`, the flags, TF Serving's config files) gives the same default and refuses a bad
value with the same words (no server is started here)."""
from __future__ import annotations

import pytest

from seg4reg_tf.serving.batching import BatchingConfig
from seg4reg_tf.serving.config import ServerConfig
from seg4reg_tf.serving.model_config import ModelConfigError, ServedModel, VersionPolicy
from seg4reg_tf.serving.request_limits import RequestLimits


# -- ints are ints, not bools, everywhere ------------------------------------------------------------
@pytest.mark.parametrize("make,field", [
    (lambda v: ServerConfig(model_base_path="/m", port=v), "port"),
    (lambda v: ServerConfig(model_base_path="/m", grpc_max_workers=v), "grpc_max_workers"),
    (lambda v: ServerConfig(model_base_path="/m", max_images_per_request=v), "max_images"),
    (lambda v: ServerConfig(model_base_path="/m", version_labels={"stable": v}), "version_labels"),
    (lambda v: BatchingConfig(max_batch_size=v), "batching.max_batch_size"),
    (lambda v: BatchingConfig(max_enqueued=v), "batching.max_enqueued"),
    (lambda v: RequestLimits(max_chunk_pixels=v), "max_chunk_pixels"),
    (lambda v: VersionPolicy.latest(v), "num_versions"),
    (lambda v: VersionPolicy.specific([v]), "specific.versions"),
    (lambda v: ServedModel("a", "/a", labels={"stable": v}), "version_labels"),
])
def test_a_bool_is_not_an_int_anywhere(make, field):
    make(1)  # an int is fine
    with pytest.raises((ValueError, ModelConfigError), match=field):
        make(True)


@pytest.mark.parametrize("make,field", [
    (lambda v: ServerConfig(model_base_path="/m", poll_seconds=v), "poll_seconds"),
    (lambda v: ServerConfig(model_base_path="/m", rest_body_timeout_s=v), "rest_body_timeout_s"),
    (lambda v: BatchingConfig(batch_timeout_ms=v), "batching.batch_timeout_ms"),
])
def test_a_bool_is_not_a_number_of_seconds_either(make, field):
    make(1.5)
    with pytest.raises(ValueError, match=field):
        make(True)
