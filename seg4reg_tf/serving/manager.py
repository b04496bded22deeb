"""`ModelManager`: the served models' version watchers, their poll thread, and `resolve(name, version,
label)` from a model spec to an AVAILABLE version (what the front ends are given)."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import grpc

from seg4reg_tf.serving.config import ServerConfig
from seg4reg_tf.serving.core import PredictionCore
from seg4reg_tf.serving.errors import ServingError, invalid_argument
from seg4reg_tf.serving.metrics import ServingMetrics
from seg4reg_tf.serving.model_config import ServedModel
from seg4reg_tf.serving.model_versions import VersionWatcher
from seg4reg_tf.serving.versions import LoadedVersion
from seg4reg_tf.serving.warmup_replay import PredictFn, run_warmup

log = logging.getLogger("seg4reg_tf.serving")


class ModelManager:
    """Loads, warms up and unloads the versions of every served model (one poll thread for all).

    `predict` is what warm-up replays its requests through (default: a `PredictionCore` with the
    config's limits); `metrics` observes model runs, batches and warm-ups."""

    def __init__(self, config: ServerConfig, on_event: Callable[[str], None] | None = None,
                 metrics: ServingMetrics | None = None, predict: PredictFn | None = None) -> None:
        self.config = config
        self._on_event = on_event or log.info
        self._metrics = metrics
        self._predict = predict or PredictionCore(config.limits, config.max_batch_size).predict
        warm_up = self._warm_up if config.enable_warmup else None
        self._watchers = {m.name: VersionWatcher(m, self._load, warm_up, lambda msg: self._on_event(msg))
                          for m in config.served_models}
        self._stop = threading.Event()
        self._scan_lock = threading.Lock()  # one scan at a time (the poll thread, or a caller)
        self._first_scan = threading.Event()
        self._thread: threading.Thread | None = None

    def _load(self, model: ServedModel, version: int, path: str) -> LoadedVersion:
        return LoadedVersion(model.name, version, path, self.config.batching, metrics=self._metrics,
                             options=self.config.options_of(model))

    def _warm_up(self, lv: LoadedVersion) -> int:
        t0, status = time.monotonic(), "OK"
        try:
            return run_warmup(lv, self._predict)
        except ServingError as err:
            status = err.code.name
            raise
        except Exception:
            status = "INTERNAL"
            raise
        finally:
            if self._metrics is not None:
                self._metrics.record_warmup(lv.path, status, time.monotonic() - t0)

    # -- polling -----------------------------------------------------------------------------------
    def scan(self) -> None:
        """One poll of every model's base path (load new aspired versions, unload the others)."""
        with self._scan_lock:
            for watcher in self._watchers.values():
                if self._stop.is_set():
                    return
                try:
                    watcher.scan(self._stop)
                except Exception:  # noqa: BLE001 - one model's problem must not stop the others
                    log.exception("version poll of model %s failed", watcher.model.name)

    def start(self, wait: bool = True, timeout: float | None = None) -> None:
        """Start polling; the first scan runs in the poll thread. `wait`: return once it has finished."""
        self._thread = threading.Thread(target=self._poll, name="version-watcher", daemon=True)
        self._thread.start()
        if wait:
            self._first_scan.wait(timeout)

    def _poll(self) -> None:
        try:
            self.scan()
        finally:
            self._first_scan.set()
        if not self.config.poll_seconds:  # TF Serving's --file_system_poll_wait_seconds=0: scan once
            return
        while not self._stop.wait(self.config.poll_seconds):
            self.scan()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        for watcher in self._watchers.values():
            watcher.close()

    # -- lookup ------------------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return sorted(self._watchers)

    def _watcher(self, name: str | None) -> VersionWatcher:
        if name is None:
            if len(self._watchers) != 1:
                raise ValueError(f"several models are served ({self.model_names()}): name one")
            return next(iter(self._watchers.values()))
        return self._watchers[name]

    def versions(self, name: str | None = None) -> dict[int, LoadedVersion]:
        """AVAILABLE versions of model `name` (None: the only model)."""
        return self._watcher(name).available()

    def failed(self, name: str | None = None) -> dict[int, str]:
        """{version: error} of the versions of model `name` (None: the only model) that failed to load."""
        return self._watcher(name).failed()

    def states(self, name: str) -> dict[int, tuple[str, str]]:
        """{version: (state, error)} of model `name`; ServingError NOT_FOUND for an unknown model."""
        if name not in self._watchers:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name!r}")
        return self._watchers[name].states()

    def all_states(self) -> dict[str, dict[int, str]]:
        """{model: {version: state name}} (the metrics' version gauges)."""
        return {name: {v: s for v, (s, _) in w.states().items()} for name, w in self._watchers.items()}

    def label_version(self, name: str, label: str) -> int:
        """The version a label of model `name` points at; INVALID_ARGUMENT for an unknown label."""
        labels = self._watchers[name].model.labels if name in self._watchers else {}
        if label not in labels:
            raise invalid_argument(f"Unrecognized servable version label: {label!r} (known: {sorted(labels)})")
        return labels[label]

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        """The AVAILABLE version for a model spec (newest without version or label); ServingError NOT_FOUND
        (unknown model or version) / INVALID_ARGUMENT (unknown label)."""
        if name not in self._watchers:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: {_describe(name, version, label)}: "
                               f"unknown model name {name!r} (serving {self.model_names()})")
        if label is not None:
            version = self.label_version(name, label)
        versions = self._watchers[name].available()
        if version is None:
            if not versions:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Latest({name}): no version AVAILABLE")
            return versions[max(versions)]
        if version not in versions:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: {_describe(name, version, label)}"
                               + (f" = version {version}" if label is not None else "")
                               + f"; AVAILABLE versions: {sorted(versions)}")
        return versions[version]


def _describe(name: str, version: int | None, label: str | None) -> str:
    if label is not None:
        return f"Labeled({name}, {label})"
    return f"Latest({name})" if version is None else f"Specific({name}, {version})"
