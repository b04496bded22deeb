"""Server-side request batching, like TF Serving's `--enable_batching`.

Concurrent requests for the same model version and signature are merged along axis 0 (the batch
dimension) up to `max_batch_size` items, waiting at most `batch_timeout_ms` after the first queued
request, run once, and the outputs are split back. If a merged run fails, every request in it is
retried alone, so one bad request cannot fail its neighbours. With `allowed_batch_sizes` (TF Serving's
batching parameter) a batch is padded up to the next allowed size by repeating its first item, and
the padding's outputs are dropped.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Callable

from seg4reg_tf.serving.checks import is_int, is_number

if TYPE_CHECKING:  # numpy is imported where batches are merged: the `serve` flags read the defaults below
    import numpy as np  # and `seg4reg --help` stays quick

log = logging.getLogger("seg4reg_tf.serving")

Tensors = dict[str, "np.ndarray"]
RunFn = Callable[[Tensors], Tensors]

# the batching defaults of `BatchingConfig`, `ServerConfig`, the prediction core's chunks and the `serve` flags
DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_BATCH_TIMEOUT_MS = 5.0


def check_allowed_batch_sizes(sizes, max_batch_size: int) -> tuple[int, ...]:
    """TF Serving's rule for `allowed_batch_sizes` (empty = any size): ints >= 1, increasing, the last equal
    to `max_batch_size`; as a tuple. ValueError saying what is wrong; callers prefix the file or field."""
    sizes = tuple(sizes)
    if not sizes:
        return sizes
    if any(not is_int(s) or s < 1 for s in sizes) or list(sizes) != sorted(set(sizes)):
        raise ValueError(f"expected increasing sizes >= 1, got {list(sizes)}")
    if sizes[-1] != max_batch_size:
        raise ValueError(f"the last entry ({sizes[-1]}) must equal max_batch_size ({max_batch_size}), "
                         "as TF Serving requires")
    return sizes


@dataclasses.dataclass
class BatchingConfig:
    """`max_batch_size` items per run; `batch_timeout_ms` longest wait (ms) for a batch to fill;
    `allowed_batch_sizes` (increasing, the last = max_batch_size; empty = any) sizes batches are padded to."""

    enabled: bool = True
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS
    max_enqueued: int = 1024  # queued requests per scheduler before RESOURCE_EXHAUSTED
    allowed_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"batching.enabled: expected a bool, got {self.enabled!r}")
        if not is_int(self.max_batch_size) or self.max_batch_size < 1:
            raise ValueError(f"batching.max_batch_size: expected a positive int, got {self.max_batch_size!r}")
        if not is_number(self.batch_timeout_ms) or not 0 <= self.batch_timeout_ms <= 60_000:
            raise ValueError(
                f"batching.batch_timeout_ms: expected a number in [0, 60000], got {self.batch_timeout_ms!r}")
        if not is_int(self.max_enqueued) or self.max_enqueued < 1:
            raise ValueError(f"batching.max_enqueued: expected a positive int, got {self.max_enqueued!r}")
        try:
            self.allowed_batch_sizes = check_allowed_batch_sizes(self.allowed_batch_sizes, self.max_batch_size)
        except ValueError as err:
            raise ValueError(f"batching.allowed_batch_sizes: {err}") from None

    def padded_size(self, items: int) -> int:
        """The allowed batch size a run of `items` is padded to (`items` itself without allowed sizes)."""
        return next((s for s in self.allowed_batch_sizes if s >= items), items)


class QueueFullError(RuntimeError):
    """The scheduler's queue holds `max_enqueued` requests already."""


class RequestCancelled(Exception):
    """The caller went away (cancelled or past its deadline) before its queued work ran; it was dropped."""


@dataclasses.dataclass(eq=False)  # identity equality: `deque.remove` must not compare arrays
class _Task:
    inputs: Tensors
    size: int
    key: tuple
    enqueued: float
    cancelled: Callable[[], bool] | None = None
    future: Future = dataclasses.field(default_factory=Future)


def _merge_key(inputs: Tensors) -> tuple:
    """Requests merge only when names, dtypes and non-batch dims agree."""
    return tuple(sorted((k, str(v.dtype), v.shape[1:]) for k, v in inputs.items()))


def batch_size_of(inputs: Tensors) -> int | None:
    """Common leading dimension of all inputs, or None when they disagree or a scalar is present."""
    sizes = {v.shape[0] if v.ndim else None for v in inputs.values()}
    if len(sizes) != 1 or None in sizes:
        return None
    return int(sizes.pop())


def _safe_call(fn: Callable[[], bool]) -> bool:
    try:
        return bool(fn())
    except Exception:  # noqa: BLE001 - a broken probe must not stop the scheduler
        return False


class BatchScheduler:
    """Merges concurrent `submit(inputs)` calls into runs of `run_fn` (one worker thread).

    `run_fn(inputs) -> outputs` maps `{name: array [B, ...]}` to `{name: array [B, ...]}`; it may raise.
    `submit` blocks and returns the caller's slice of the outputs or re-raises the caller's error.
    Counters: `runs` (calls of run_fn), `requests`, `merged_runs` (runs serving > 1 request), `max_items`,
    `dropped` (requests whose caller was gone before they ran).
    """

    def __init__(self, run_fn: RunFn, config: BatchingConfig, name: str = "",
                 on_submit: Callable[[int], None] | None = None, on_run: Callable[[int], None] | None = None) -> None:
        """`on_submit(items)` / `on_run(items)`: observers of each queued request and each run (metrics)."""
        self._run_fn = run_fn
        self.config = config
        self.name = name
        self._on_submit, self._on_run = on_submit, on_run
        self._queue: collections.deque[_Task] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.runs = 0
        self.requests = 0
        self.merged_runs = 0
        self.max_items = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, inputs: Tensors, timeout: float | None = None,
               cancelled: Callable[[], bool] | None = None) -> Tensors:
        """Queue one request `{name: array [b, ...]}` and wait for its outputs.

        `cancelled()` True when the batch forms: the request is dropped (RequestCancelled), not run."""
        size = batch_size_of(inputs)
        if size is None:
            raise ValueError("batching: all inputs need the same leading (batch) dimension, got shapes "
                             + str({k: tuple(v.shape) for k, v in inputs.items()}))
        task = _Task(inputs, size, _merge_key(inputs), time.monotonic(), cancelled)
        with self._cond:
            if self._closed:
                raise RuntimeError(f"batcher {self.name} is closed (model version unloaded)")
            if len(self._queue) >= self.config.max_enqueued:
                raise QueueFullError(f"batcher {self.name}: queue full ({self.config.max_enqueued} requests)")
            self._queue.append(task)
            self.requests += 1
            self._cond.notify_all()
        if self._on_submit is not None:
            self._on_submit(size)
        return task.future.result(timeout=timeout)

    def close(self) -> None:
        """Finish queued requests, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    # -- worker ---------------------------------------------------------------------------------
    def _compatible(self, first: _Task) -> list[_Task]:
        """Queued tasks that can join `first`'s batch, in order, within max_batch_size."""
        chosen, total = [first], first.size
        for task in self._queue:
            if task is first or task.key != first.key:
                continue
            if total + task.size > self.config.max_batch_size:
                continue
            chosen.append(task)
            total += task.size
        return chosen

    def _drop_cancelled(self) -> None:
        """Answer and remove queued tasks whose caller has gone (call with the lock held)."""
        for task in [t for t in self._queue if t.cancelled is not None and _safe_call(t.cancelled)]:
            self._queue.remove(task)
            self.dropped += 1
            task.future.set_exception(RequestCancelled(f"batcher {self.name}: request cancelled by its "
                                                       "client (or past its deadline) before it ran; dropped"))

    def _next_batch(self) -> list[_Task] | None:
        timeout_s = self.config.batch_timeout_ms / 1000.0
        with self._cond:
            while True:
                self._drop_cancelled()
                if self._queue:
                    break
                if self._closed:
                    return None
                self._cond.wait(0.5)  # wakes to drop cancelled work even when nothing new arrives
            first = self._queue[0]
            deadline = first.enqueued + timeout_s
            while True:
                batch = self._compatible(first)
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0 or sum(t.size for t in batch) >= self.config.max_batch_size:
                    break
                self._cond.wait(remaining)
            for task in batch:
                self._queue.remove(task)
            return batch

    def _loop(self) -> None:
        while True:
            try:
                batch = self._next_batch()
            except BaseException as err:  # a bug here must not strand waiting callers
                log.exception("batcher %s: scheduling failed", self.name)
                with self._cond:
                    stranded, self._queue = list(self._queue), collections.deque()
                for task in stranded:
                    task.future.set_exception(err)
                continue
            if batch is None:
                return
            try:
                self._run_batch(batch)
            except BaseException as err:  # never let the worker die with futures pending
                for task in batch:
                    if not task.future.done():
                        task.future.set_exception(err)

    def _call(self, inputs: Tensors) -> Tensors:
        import numpy as np

        items = batch_size_of(inputs) or 0
        padded = self.config.padded_size(items)
        if padded > items:  # repeat the first item up to the allowed size; its outputs are dropped
            inputs = {k: np.concatenate([v, np.repeat(v[:1], padded - items, axis=0)]) for k, v in inputs.items()}
        self.runs += 1
        self.max_items = max(self.max_items, padded)
        if self._on_run is not None:
            self._on_run(padded)
        outputs = self._run_fn(inputs)
        if padded > items:
            outputs = {k: v[:items] if np.ndim(v) else v for k, v in outputs.items()}
        return outputs

    def _run_alone(self, task: _Task) -> None:
        try:
            task.future.set_result(self._call(task.inputs))
        except Exception as err:  # noqa: BLE001 - delivered to the caller
            task.future.set_exception(err)

    def _run_batch(self, batch: list[_Task]) -> None:
        import numpy as np

        if len(batch) == 1:
            self._run_alone(batch[0])
            return
        merged = {k: np.concatenate([t.inputs[k] for t in batch], axis=0) for k in batch[0].inputs}
        total = sum(t.size for t in batch)
        try:
            outputs = self._call(merged)
            if any(np.ndim(v) == 0 or np.shape(v)[0] != total for v in outputs.values()):
                raise ValueError("outputs without the batch dimension cannot be split")
        except Exception as err:  # noqa: BLE001 - retry alone: only the bad request should fail
            log.debug("batcher %s: merged run of %d requests failed (%s); retrying one by one",
                      self.name, len(batch), err)
            for task in batch:
                self._run_alone(task)
            return
        self.merged_runs += 1
        start = 0
        for task in batch:
            task.future.set_result({k: v[start:start + task.size] for k, v in outputs.items()})
            start += task.size
