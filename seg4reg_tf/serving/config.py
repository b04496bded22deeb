"""`ServerConfig`: the flags of `seg4reg serve`, validated."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from seg4reg_tf.serving.batching import BatchingConfig
from seg4reg_tf.serving.request_limits import RequestLimits

MAX_MESSAGE_BYTES = 256 << 20


@dataclasses.dataclass
class ServerConfig:
    """Flags of `seg4reg serve`. Ports 0 pick a free port; `rest_port=-1` disables REST."""

    model_base_path: str
    model_name: str = "seg4reg"
    port: int = 8500
    rest_port: int = 8501
    host: str = "127.0.0.1"
    max_batch_size: int = 8
    batch_timeout_ms: float = 5.0
    enable_batching: bool = True
    poll_seconds: float = 2.0
    num_versions: int = 0  # keep the newest N versions loaded; 0 = every complete version
    version_labels: dict[str, int] = dataclasses.field(default_factory=dict)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    grpc_max_workers: int = 32
    max_concurrent_rpcs: int = 256
    enable_warmup: bool = True  # replay assets.extra/tf_serving_warmup_requests before serving
    max_images_per_request: int = 256  # items (images / examples) per Predict
    max_request_pixels: int = 1_000_000_000  # decoded pixels per Predict (from the image headers)
    max_chunk_pixels: int = 64_000_000  # a large request runs in chunks of <= max_batch_size and this
    rest_header_timeout_s: float = 5.0  # REST: request line + headers (and keep-alive idle) limit
    rest_body_timeout_s: float = 10.0  # REST: longest silence while reading a body -> 408

    def __post_init__(self) -> None:
        if not isinstance(self.model_base_path, (str, os.PathLike)) or not str(self.model_base_path):
            raise ValueError(f"model_base_path: expected a directory path, got {self.model_base_path!r}")
        self.model_base_path = str(self.model_base_path)
        if not isinstance(self.model_name, str) or not self.model_name or "/" in self.model_name:
            raise ValueError(f"model_name: expected a non-empty name without '/', got {self.model_name!r}")
        if not _is_int(self.port) or not 0 <= self.port <= 65535:
            raise ValueError(f"port: expected an int in [0, 65535], got {self.port!r}")
        if not _is_int(self.rest_port) or not -1 <= self.rest_port <= 65535:
            raise ValueError(f"rest_port: expected an int in [-1, 65535], got {self.rest_port!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host: expected a host name or address, got {self.host!r}")
        if not isinstance(self.poll_seconds, (int, float)) or isinstance(self.poll_seconds, bool) \
                or self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds: expected a positive number, got {self.poll_seconds!r}")
        if not _is_int(self.num_versions) or self.num_versions < 0:
            raise ValueError(f"num_versions: expected an int >= 0, got {self.num_versions!r}")
        for label, version in self.version_labels.items():
            if not isinstance(label, str) or not label or not _is_int(version) or version < 0:
                raise ValueError(f"version_labels: expected label -> version >= 0, got {label!r}: {version!r}")
        for key in ("max_message_bytes", "grpc_max_workers", "max_concurrent_rpcs"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{key}: expected a positive int, got {value!r}")
        if not isinstance(self.enable_warmup, bool):
            raise ValueError(f"enable_warmup: expected a bool, got {self.enable_warmup!r}")
        self.batching  # validates max_batch_size / batch_timeout_ms
        self.limits  # validates the request limits

    @property
    def limits(self) -> RequestLimits:
        return RequestLimits(max_images=self.max_images_per_request, max_request_pixels=self.max_request_pixels,
                             max_chunk_pixels=self.max_chunk_pixels)

    @property
    def batching(self) -> BatchingConfig:
        return BatchingConfig(enabled=self.enable_batching, max_batch_size=self.max_batch_size,
                              batch_timeout_ms=float(self.batch_timeout_ms))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
