"""`ModelManager`: the version poller. Watches BASE_PATH, loads (and warms up) new complete versions,
unloads vanished ones, and resolves a model spec (name, version or label) to a loaded version."""
from __future__ import annotations

import logging
import os
import threading
from typing import Callable

import grpc

from seg4reg_tf.export.layout import WARMUP_RELPATH, version_dirs
from seg4reg_tf.serving.config import ServerConfig
from seg4reg_tf.serving.errors import ServingError, first_line, invalid_argument
from seg4reg_tf.serving.versions import LoadedVersion
from seg4reg_tf.serving.warmup import run_warmup

log = logging.getLogger("seg4reg_tf.serving")


class ModelManager:
    """Watches `base_path` for numeric version directories holding `saved_model.pb`; loads/unloads."""

    def __init__(self, config: ServerConfig, on_event: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._on_event = on_event or log.info
        self._versions: dict[int, LoadedVersion] = {}
        self._failed: dict[int, tuple[tuple, str]] = {}  # version -> (files fingerprint, error)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned_missing = False

    # -- discovery ---------------------------------------------------------------------------
    def _on_disk(self) -> dict[int, str]:
        base = self.config.model_base_path
        try:
            found = version_dirs(base)
        except OSError as err:
            if not self._warned_missing:
                log.warning("model base path %s: %s; still polling", base, err)
                self._warned_missing = True
            return {}
        if self.config.num_versions:
            found = dict(sorted(found.items())[-self.config.num_versions:])
        return found

    def scan(self) -> None:
        """Load new complete versions and unload vanished ones (one poll)."""
        wanted = self._on_disk()
        with self._lock:
            current = set(self._versions)
        for version in sorted(set(wanted) - current, reverse=True):
            path = wanted[version]
            fingerprint = _fingerprint(path)
            if version in self._failed and self._failed[version][0] == fingerprint:
                continue  # retry a failed version only once its files change
            self._on_event(f"loading model {self.config.model_name} version {version} from {path}")
            try:
                loaded = LoadedVersion(self.config.model_name, version, path, self.config.batching)
            except Exception as err:  # noqa: BLE001 - a broken version must not stop the server
                self._failed[version] = (fingerprint, first_line(str(err)))
                log.error("failed to load model %s version %d from %s: %s",
                          self.config.model_name, version, path, first_line(str(err)))
                continue
            if self.config.enable_warmup:
                try:
                    n = run_warmup(loaded, self.config.limits, self.config.max_batch_size)
                except Exception as err:  # noqa: BLE001 - TF Serving fails the load; the server stays up
                    loaded.close()
                    message = err.message if isinstance(err, ServingError) else first_line(str(err))
                    self._failed[version] = (fingerprint, f"warmup failed: {message}")
                    log.error("failed to load model %s version %d from %s: warmup failed: %s",
                              self.config.model_name, version, path, message)
                    continue
                if n:
                    self._on_event(f"model {self.config.model_name} version {version}: replayed {n} "
                                   f"warmup request(s) from {WARMUP_RELPATH}")
            self._failed.pop(version, None)
            with self._lock:
                self._versions[version] = loaded
            self._on_event(f"loaded model {self.config.model_name} version {version} "
                           f"(signatures: {', '.join(sorted(loaded.signatures))})")
        for version in sorted(current - set(wanted)):
            with self._lock:
                loaded = self._versions.pop(version)
            self._on_event(f"unloading model {self.config.model_name} version {version}")
            loaded.close()
            self._on_event(f"unloaded model {self.config.model_name} version {version}")
        for version in list(self._failed):
            if version not in wanted:
                self._failed.pop(version)

    def start(self) -> None:
        self.scan()
        self._thread = threading.Thread(target=self._poll, name="version-watcher", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.scan()
            except Exception:  # noqa: BLE001 - keep polling
                log.exception("version poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            versions, self._versions = list(self._versions.values()), {}
        for loaded in versions:
            loaded.close()

    # -- lookup ------------------------------------------------------------------------------
    def versions(self) -> dict[int, LoadedVersion]:
        with self._lock:
            return dict(self._versions)

    def failed(self) -> dict[int, str]:
        return {v: e for v, (_, e) in self._failed.items()}

    def get(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        """The loaded version for a model spec; ServingError NOT_FOUND / INVALID_ARGUMENT."""
        if name != self.config.model_name:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: {_describe(name, version, label)}: "
                               f"unknown model name {name!r} (serving {self.config.model_name!r})")
        if label is not None:
            if label not in self.config.version_labels:
                raise invalid_argument(f"Unrecognized servable version label: {label!r} "
                                       f"(known: {sorted(self.config.version_labels)})")
            version = self.config.version_labels[label]
        versions = self.versions()
        if version is None:
            if not versions:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Latest({name}): no version loaded")
            return versions[max(versions)]
        if version not in versions:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version}); "
                               f"loaded versions: {sorted(versions)}")
        return versions[version]


def _fingerprint(path: str) -> tuple:
    """(relative path, size, mtime) of every file under a version directory."""
    out = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            out.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


def _describe(name: str, version: int | None, label: str | None) -> str:
    if label is not None:
        return f"Labeled({name}, {label})"
    return f"Latest({name})" if version is None else f"Specific({name}, {version})"
