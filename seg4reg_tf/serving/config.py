"""`ServerConfig`: the settings of `seg4reg serve` (its flags and TF Serving's config files), validated."""
from __future__ import annotations

import dataclasses
import os

from seg4reg_tf.export.layout import EXAMPLE_IMAGE_KEY, EXAMPLES_INPUT, MAY_BE_NAN
from seg4reg_tf.serving.batching import DEFAULT_BATCH_TIMEOUT_MS, DEFAULT_MAX_BATCH_SIZE, BatchingConfig
from seg4reg_tf.serving.checks import is_int, is_number
from seg4reg_tf.serving.config_files import check_prometheus_path
from seg4reg_tf.serving.model_config import ModelConfigError, ModelOptions, ServedModel, VersionPolicy
from seg4reg_tf.serving.request_limits import (
    DEFAULT_MAX_CHUNK_PIXELS,
    DEFAULT_MAX_IMAGES,
    DEFAULT_MAX_REQUEST_PIXELS,
    RequestLimits,
)

MAX_MESSAGE_BYTES = 256 << 20
# what the server is told about the seg4reg model (`export.layout`'s names): the interval outputs' NaN means
# "not measurable"; `predict_example`'s `examples` are tf.Examples holding the image in `image/encoded`
SEG4REG_MODEL_OPTIONS = ModelOptions(nan_outputs=frozenset(MAY_BE_NAN),
                                     example_image_keys={EXAMPLES_INPUT: EXAMPLE_IMAGE_KEY})


@dataclasses.dataclass
class ServerConfig:
    """What to serve and how. Either one model (`model_base_path`, `model_name`, `version_policy`,
    `version_labels`) or several (`models`, from a model config file). Ports 0 pick a free port;
    `rest_port=-1` disables REST. Times in the unit their name ends with (s, ms)."""

    model_base_path: str = ""
    model_name: str = "seg4reg"
    models: tuple[ServedModel, ...] = ()  # instead of model_base_path: TF Serving's --model_config_file
    version_policy: VersionPolicy = dataclasses.field(default_factory=VersionPolicy)  # default: the newest only
    version_labels: dict[str, int] = dataclasses.field(default_factory=dict)
    port: int = 8500
    rest_port: int = 8501
    host: str = "127.0.0.1"
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS
    enable_batching: bool = True
    allowed_batch_sizes: tuple[int, ...] = ()  # pad batches up to these sizes (the last = max_batch_size)
    max_enqueued_batches: int = 128  # queue limit per batcher: this many batches of max_batch_size requests
    poll_seconds: float = 2.0  # how often every base path is re-scanned (0 = only at start)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    grpc_max_workers: int = 32
    max_concurrent_rpcs: int = 256
    enable_warmup: bool = True  # replay assets.extra/tf_serving_warmup_requests before serving
    max_images_per_request: int = DEFAULT_MAX_IMAGES  # items (images / examples) per Predict
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS  # decoded pixels per Predict (from the image headers)
    max_chunk_pixels: int = DEFAULT_MAX_CHUNK_PIXELS  # a large request runs in chunks of <= max_batch_size and this
    rest_header_timeout_s: float = 5.0  # REST: total deadline for request line + headers (and keep-alive idle)
    rest_body_timeout_s: float = 10.0  # REST: longest silence in a body; whole body within this + size / 256 KiB/s
    rest_api_timeout_ms: int = 30_000  # REST: answer deadline per request (TF Serving's --rest_api_timeout_in_ms)
    rest_max_connections: int = 1024  # REST: open connections; a new one evicts the oldest idle or unfinished one
    rest_threads: int = 32  # REST: requests worked on at once (TF Serving's --rest_api_num_threads)
    prometheus_path: str = ""  # "" = no metrics; else the REST path of the Prometheus page
    model_options: ModelOptions = SEG4REG_MODEL_OPTIONS  # of every model whose ServedModel.options is None

    def __post_init__(self) -> None:
        if isinstance(self.model_base_path, os.PathLike):
            self.model_base_path = os.fspath(self.model_base_path)
        if not isinstance(self.model_base_path, str):
            raise ValueError(f"model_base_path: expected a directory path, got {self.model_base_path!r}")
        self.models = tuple(self.models)
        if bool(self.model_base_path) == bool(self.models):
            raise ValueError("model_base_path / models: give either one model's base path or the models of a "
                             "model config file" + (" (got both)" if self.models else ""))
        if any(not isinstance(m, ServedModel) for m in self.models):
            raise ValueError("models: expected ServedModel entries (model_config.read_model_config_file)")
        if self.models and self.version_labels:
            raise ValueError("version_labels: with a model config file, set version_labels per model in the file")
        if not self.models and (not isinstance(self.model_name, str) or not self.model_name
                                or "/" in self.model_name or ":" in self.model_name):
            raise ValueError(f"model_name: expected a non-empty name without '/' or ':', got {self.model_name!r}")
        if not isinstance(self.version_policy, VersionPolicy):
            raise ValueError(f"version_policy: expected a VersionPolicy, got {self.version_policy!r}")
        try:
            self.served_models  # validates model_name, labels
        except ModelConfigError as err:
            raise ValueError(str(err)) from None
        if not is_int(self.port) or not 0 <= self.port <= 65535:
            raise ValueError(f"port: expected an int in [0, 65535], got {self.port!r}")
        if not is_int(self.rest_port) or not -1 <= self.rest_port <= 65535:
            raise ValueError(f"rest_port: expected an int in [-1, 65535], got {self.rest_port!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host: expected a host name or address, got {self.host!r}")
        if not is_number(self.poll_seconds) or not self.poll_seconds >= 0:
            raise ValueError(f"poll_seconds: expected seconds >= 0 (0 = scan once), got {self.poll_seconds!r}")
        for key in ("rest_header_timeout_s", "rest_body_timeout_s"):
            value = getattr(self, key)
            if not is_number(value) or not value > 0:
                raise ValueError(f"{key}: expected a positive number of seconds, got {value!r}")
        for key in ("max_message_bytes", "grpc_max_workers", "max_concurrent_rpcs", "max_enqueued_batches",
                    "rest_api_timeout_ms", "rest_max_connections", "rest_threads"):
            value = getattr(self, key)
            if not is_int(value) or value < 1:
                raise ValueError(f"{key}: expected a positive int, got {value!r}")
        if not isinstance(self.model_options, ModelOptions):
            raise ValueError(f"model_options: expected ModelOptions, got {self.model_options!r}")
        if not isinstance(self.enable_warmup, bool):
            raise ValueError(f"enable_warmup: expected a bool, got {self.enable_warmup!r}")
        if self.prometheus_path != "":  # "" = no metrics
            try:
                check_prometheus_path(self.prometheus_path)
            except ValueError as err:
                raise ValueError(f"prometheus_path ('' = no metrics): {err}") from None
        self.allowed_batch_sizes = tuple(self.allowed_batch_sizes)
        self.batching  # validates max_batch_size / batch_timeout_ms / allowed_batch_sizes
        self.limits  # validates the request limits (RequestLimits owns their check)

    @property
    def served_models(self) -> tuple[ServedModel, ...]:
        """The models to serve: `models`, or the one model of `model_base_path`."""
        if self.models:
            return self.models
        return (ServedModel(self.model_name, self.model_base_path, self.version_policy, self.version_labels),)

    def options_of(self, model: ServedModel) -> ModelOptions:
        """The options `model` is served with: its own, else `model_options`."""
        return self.model_options if model.options is None else model.options

    @property
    def limits(self) -> RequestLimits:
        return RequestLimits(max_images=self.max_images_per_request, max_request_pixels=self.max_request_pixels,
                             max_chunk_pixels=self.max_chunk_pixels)

    @property
    def batching(self) -> BatchingConfig:
        return BatchingConfig(enabled=self.enable_batching, max_batch_size=self.max_batch_size,
                              batch_timeout_ms=float(self.batch_timeout_ms),
                              max_enqueued=max(1, self.max_enqueued_batches * self.max_batch_size)
                              if is_int(self.max_batch_size) else 1,
                              allowed_batch_sizes=self.allowed_batch_sizes)
