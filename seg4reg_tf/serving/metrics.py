"""`ServingMetrics`: what the server counts, exported at the monitoring config's Prometheus path.

TF Serving's names where it has the metric (its exporter turns `/tensorflow/serving/request_count`
into `:tensorflow:serving:request_count`), `seg4reg_serving_*` where it has none:

| metric | type, unit | labels |
|---|---|---|
| `:tensorflow:serving:request_count` | counter | model_name, status (gRPC code name, "OK") |
| `:tensorflow:serving:request_latency` | histogram, microseconds | model_name, API, entrypoint |
| `:tensorflow:serving:batching_session:input_batch_size` | histogram, items per request into a batcher | |
| `:tensorflow:serving:batching_session:processed_batch_size` | histogram, items per batch run | |
| `:tensorflow:serving:model_warmup_latency` | histogram, microseconds | model_path, status |
| `seg4reg_serving_requests_total` | counter | model_name, version, signature_name, API, entrypoint, status |
| `seg4reg_serving_batch_size` | histogram, items per model run | model_name, version, signature_name |
| `seg4reg_serving_model_version_state` | gauge, 1 per version in its state | model_name, version, state |
| `seg4reg_serving_loaded_versions` | gauge, AVAILABLE versions | model_name |

Requests are the inference calls (API Predict, Classify, Regress, MultiInference; entrypoint GRPC or
REST), counted once each when answered, whatever the answer; warm-up replays are not requests (the batch
histograms do include their model runs). A request for a model that is not served counts under
model_name "" (clients cannot grow the label set).
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable, Iterable, Iterator

from seg4reg_tf.serving.errors import ServingError
from seg4reg_tf.serving.prometheus import Counter, Gauge, Histogram, Registry, exponential_buckets

LATENCY_BUCKETS_US = exponential_buckets(10, 1.8, 33)  # TF Serving's: 10 us .. ~20 minutes
BATCH_BUCKETS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512, 1024]
VersionStates = Callable[[], dict[str, dict[int, str]]]  # {model name: {version: state name}}


@dataclasses.dataclass
class RequestRecord:
    """What a front end learns while answering one request (filled in as it resolves the spec)."""

    version: int | None = None
    signature_name: str = ""


class ServingMetrics:
    """The server's metrics registry for the served `model_names`; `render()` is the Prometheus text page."""

    def __init__(self, model_names: Iterable[str] = ()) -> None:
        self.model_names = frozenset(model_names)
        self.registry = Registry()
        self._version_states: VersionStates = dict
        reg = self.registry.register
        self.request_count = reg(Counter(":tensorflow:serving:request_count", "The total number of requests.",
                                         ["model_name", "status"]))
        self.request_latency = reg(Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            LATENCY_BUCKETS_US, ["model_name", "API", "entrypoint"]))
        self.input_batch_size = reg(Histogram(":tensorflow:serving:batching_session:input_batch_size",
                                              "Tracks the batch size distribution on the inputs.", BATCH_BUCKETS))
        self.processed_batch_size = reg(Histogram(":tensorflow:serving:batching_session:processed_batch_size",
                                                  "Tracks the batch size distribution on processing.", BATCH_BUCKETS))
        self.warmup_latency = reg(Histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            LATENCY_BUCKETS_US, ["model_path", "status"]))
        self.requests = reg(Counter(
            "seg4reg_serving_requests_total",
            "Inference requests answered, by model, version, signature, API, entrypoint and status.",
            ["model_name", "version", "signature_name", "API", "entrypoint", "status"]))
        self.batch_size = reg(Histogram("seg4reg_serving_batch_size",
                                        "Items per model run (a merged batch counts once), by model version "
                                        "and signature.", BATCH_BUCKETS, ["model_name", "version", "signature_name"]))
        reg(Gauge("seg4reg_serving_model_version_state",
                  "1 for each model version in its current state (START, LOADING, AVAILABLE, UNLOADING, END).",
                  self._state_samples, ["model_name", "version", "state"]))
        reg(Gauge("seg4reg_serving_loaded_versions", "Model versions AVAILABLE (loaded, warmed up, serving).",
                  self._loaded_samples, ["model_name"]))

    def watch_versions(self, version_states: VersionStates) -> None:
        """Where the version gauges read `{model name: {version: state}}` at each scrape."""
        self._version_states = version_states

    # -- recording -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def observe(self, model_name: str, api: str, entrypoint: str) -> Iterator[RequestRecord]:
        """Time and count the request answered inside the block: status OK, the ServingError's code name,
        or INTERNAL for any other exception (which propagates)."""
        record, status, t0 = RequestRecord(), "OK", time.monotonic()
        try:
            yield record
        except ServingError as err:
            status = err.code.name
            raise
        except BaseException:
            status = "INTERNAL"
            raise
        finally:
            name = model_name if model_name in self.model_names else ""
            self.record_request(name, record.version, record.signature_name, api, entrypoint, status,
                                time.monotonic() - t0)

    def record_request(self, model_name: str, version: int | None, signature_name: str, api: str,
                       entrypoint: str, status: str, seconds: float) -> None:
        """One answered inference request; `status` a gRPC code name ("OK", "INVALID_ARGUMENT", ...)."""
        self.request_count.inc(model_name, status)
        self.request_latency.observe(seconds * 1e6, model_name, api, entrypoint)
        self.requests.inc(model_name, "" if version is None else str(version), signature_name, api, entrypoint,
                          status)

    def record_model_run(self, model_name: str, version: int, signature_name: str, items: int) -> None:
        self.batch_size.observe(items, model_name, str(version), signature_name)

    def record_batch_input(self, items: int) -> None:
        self.input_batch_size.observe(items)

    def record_batch_processed(self, items: int) -> None:
        self.processed_batch_size.observe(items)

    def record_warmup(self, model_path: str, status: str, seconds: float) -> None:
        self.warmup_latency.observe(seconds * 1e6, model_path, status)

    # -- export ----------------------------------------------------------------------------------
    def render(self) -> str:
        return self.registry.render()

    def _state_samples(self) -> dict[tuple[str, ...], float]:
        return {(model, str(v), state): 1.0 for model, states in self._version_states().items()
                for v, state in states.items()}

    def _loaded_samples(self) -> dict[tuple[str, ...], float]:
        return {(model,): float(sum(s == "AVAILABLE" for s in states.values()))
                for model, states in self._version_states().items()}
