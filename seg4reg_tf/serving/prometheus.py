"""A small thread-safe metrics registry written as Prometheus' text exposition format (version 0.0.4).

`Counter` and `Histogram` hold values per label combination; `Gauge` asks a callback for its values
when scraped. `Registry.render()` returns the page: `# HELP` / `# TYPE` lines, then one sample per
line (`name{label="value",...} number`), histograms as cumulative `_bucket{le=...}`, `_sum`, `_count`.
Metric names may contain colons (TF Serving's `:tensorflow:serving:request_count`).
"""
from __future__ import annotations

import bisect
import math
import re
import threading
from typing import Callable, Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r} is not a valid Prometheus name")
        bad = [label for label in labels if not _LABEL.match(label) or label == "le"]
        if bad:
            raise ValueError(f"metric {name}: invalid label names {bad}")
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> tuple[str, ...]:
        if len(labels) != len(self.label_names):
            raise ValueError(f"metric {self.name}: expected labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(v) for v in labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help.replace(chr(10), ' ')}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing count per label combination."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (amount {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Histogram(_Metric):
    """Counts of observations at or below each bucket's upper bound (`le`), their sum and their count."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Iterable[float], labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {self.name}: expected distinct bucket bounds, got {bounds}")
        self.bounds = bounds
        self._values: dict[tuple[str, ...], tuple[list[int], float]] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total = self._values.get(key) or ([0] * (len(self.bounds) + 1), 0.0)
            counts[bisect.bisect_left(self.bounds, value)] += 1
            self._values[key] = (counts, total + value)

    def count(self, *labels: str) -> int:
        with self._lock:
            entry = self._values.get(self._key(labels))
            return sum(entry[0]) if entry else 0

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted((k, (list(c), s)) for k, (c, s) in self._values.items())
        lines = []
        for key, (counts, total) in items:
            running = 0
            for bound, n in zip(self.bounds + [math.inf], counts):
                running += n
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return lines


class Gauge(_Metric):
    """A value that goes up and down, read from `collect() -> {label values: value}` at each scrape."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, collect: Callable[[], dict[tuple[str, ...], float]],
                 labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._collect = collect

    def samples(self) -> list[str]:
        values = self._collect()
        return [f"{self.name}{_labels(self.label_names, self._key(k))} {_number(v)}" for k, v in sorted(values.items())]


class Registry:
    """The metrics of one server, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def register(self, metric: _Metric) -> _Metric:
        if any(m.name == metric.name for m in self._metrics):
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines = []
        for metric in self._metrics:
            lines += metric.header() + metric.samples()
        return "\n".join(lines) + "\n"


def exponential_buckets(start: float, factor: float, count: int) -> list[float]:
    """`count` bounds start, start * factor, ... (TF's `Buckets::Exponential(scale, growth, count)`)."""
    return [float(f"{start * factor ** i:.6g}") for i in range(count)]
