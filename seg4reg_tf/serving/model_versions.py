"""`VersionWatcher`: one model's versions. Finds the complete version directories under its base path,
loads and warms up those its `VersionPolicy` aspires to, unloads the others without losing availability,
and tracks each version's state as TF Serving reports it:

START (aspired, waiting) -> LOADING (loading the SavedModel and replaying its warm-up) -> AVAILABLE
(served) -> UNLOADING -> END; a failed load is END with the error, retried once its files change.

Unloading follows TF Serving's AvailabilityPreservingPolicy: a version the policy no longer aspires to
is unloaded once an aspired version is AVAILABLE (or when nothing is aspired any more); if the new
version fails to load, the old one keeps serving.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from seg4reg_tf import fileio
from seg4reg_tf.export.layout import version_dirs
from seg4reg_tf.serving.errors import ServingError, first_line
from seg4reg_tf.serving.model_config import ServedModel
from seg4reg_tf.serving.versions import LoadedVersion

log = logging.getLogger("seg4reg_tf.serving")

STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")
Loader = Callable[[ServedModel, int, str], LoadedVersion]  # (model, version, path) -> loaded version
WarmUp = Callable[[LoadedVersion], int]  # replays the warm-up requests; raises to fail the load


class VersionWatcher:
    """The versions of one `ServedModel`: `scan()` loads / unloads; `available()` / `states()` read them."""

    def __init__(self, model: ServedModel, load: Loader, warm_up: WarmUp | None,
                 on_event: Callable[[str], None]) -> None:
        self.model = model
        self._load, self._warm_up, self._event = load, warm_up, on_event
        self._loaded: dict[int, LoadedVersion] = {}  # AVAILABLE versions
        self._states: dict[int, tuple[str, str]] = {}  # version -> (state, error)
        self._failed: dict[int, tuple] = {}  # version -> fingerprint of the files that failed
        self._lock = threading.Lock()
        self._warned_missing = False

    # -- reading (any thread) ----------------------------------------------------------------------
    def available(self) -> dict[int, LoadedVersion]:
        with self._lock:
            return dict(self._loaded)

    def states(self) -> dict[int, tuple[str, str]]:
        """{version: (state, error)} of every version known (aspired, loaded, failed or unloaded)."""
        with self._lock:
            return dict(self._states)

    def failed(self) -> dict[int, str]:
        with self._lock:
            return {v: e for v, (s, e) in self._states.items() if s == "END" and e}

    # -- scanning (the poll thread) ----------------------------------------------------------------
    def _on_disk(self) -> dict[int, str]:
        try:
            found = version_dirs(self.model.base_path)
        except OSError as err:
            if not self._warned_missing:
                log.warning("model %s: base path %s: %s; still polling", self.model.name, self.model.base_path, err)
                self._warned_missing = True
            return {}
        self._warned_missing = False
        return found

    def _set(self, version: int, state: str, error: str = "") -> None:
        with self._lock:
            self._states[version] = (state, error)

    def scan(self, stop: threading.Event | None = None) -> None:
        """One poll: load the aspired versions (newest first), then unload what is no longer aspired."""
        on_disk = self._on_disk()
        aspired = self.model.policy.aspired(on_disk)
        todo = []
        for version in sorted(aspired, reverse=True):
            if version in self._loaded:
                continue
            fingerprint = _fingerprint(on_disk[version])
            if self._failed.get(version) == fingerprint:
                continue  # retry a failed version only once its files change
            todo.append((version, fingerprint))
            self._set(version, "START")
        for version, fingerprint in todo:
            if stop is not None and stop.is_set():
                return
            self._load_version(version, on_disk[version], fingerprint)
        self._unload_unaspired(aspired)
        with self._lock:  # forget versions that are neither on disk nor loaded
            for version in [v for v in self._states if v not in on_disk and v not in self._loaded]:
                self._states.pop(version)
                self._failed.pop(version, None)

    def _load_version(self, version: int, path: str, fingerprint: tuple) -> None:
        name = self.model.name
        self._set(version, "LOADING")
        self._event(f"loading model {name} version {version} from {path}")
        try:
            loaded = self._load(self.model, version, path)
        except Exception as err:  # noqa: BLE001 - a broken version must not stop the server
            self._fail(version, fingerprint, path, first_line(str(err)))
            return
        if self._warm_up is not None:
            try:
                n = self._warm_up(loaded)
            except Exception as err:  # noqa: BLE001 - TF Serving fails the load; the server stays up
                loaded.close()
                message = err.message if isinstance(err, ServingError) else first_line(str(err))
                self._fail(version, fingerprint, path, f"warmup failed: {message}")
                return
            if n:
                self._event(f"model {name} version {version}: replayed {n} warmup request(s)")
        self._failed.pop(version, None)
        with self._lock:
            self._loaded[version] = loaded
            self._states[version] = ("AVAILABLE", "")
        self._event(f"loaded model {name} version {version} (signatures: {', '.join(sorted(loaded.signatures))})")

    def _fail(self, version: int, fingerprint: tuple, path: str, message: str) -> None:
        self._failed[version] = fingerprint
        self._set(version, "END", message)
        log.error("failed to load model %s version %d from %s: %s", self.model.name, version, path, message)

    def _unload_unaspired(self, aspired: set[int]) -> None:
        """TF Serving's AvailabilityPreservingPolicy, one unload at a time, lowest version first."""
        while True:
            loaded = set(self.available())
            unaspired = sorted(loaded - aspired)
            # unload when nothing is aspired, an aspired version serves, or another unaspired one still does;
            # an aspired version that failed (END) keeps the last unaspired one serving
            if not unaspired or not (not aspired or aspired & loaded or len(unaspired) > 1):
                return
            self.unload(unaspired[0])

    def unload(self, version: int) -> None:
        name = self.model.name
        with self._lock:
            loaded = self._loaded.pop(version, None)
            if loaded is None:
                return
            self._states[version] = ("UNLOADING", "")
        self._event(f"unloading model {name} version {version}")
        loaded.close()  # queued batches finish first
        self._set(version, "END")
        self._event(f"unloaded model {name} version {version}")

    def close(self) -> None:
        for version in sorted(self.available()):
            self.unload(version)


def _fingerprint(path: str) -> tuple:
    """(relative path, size, mtime) of every file under a version directory (any TF filesystem)."""
    out = []
    for rel in fileio.walk_files(path):
        try:
            out.append((rel, *fileio.stat(fileio.join(path, rel))))
        except OSError:  # removed meanwhile
            continue
    return tuple(sorted(out))
