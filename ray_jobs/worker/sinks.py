"""Where a training run reports its progress: the ``ProgressSink`` protocol and simple sinks.

Only rank 0 of a training run (and the driver, for failures) talks to a sink. The sink is built
*inside* the worker from a small JSON-able spec in the loop config (``make_sink(spec)``), so nothing
unpicklable crosses the Ray boundary:

- ``{"kind": "print"}`` — one JSON object per line on stdout (running by hand);
- ``{"kind": "jsonl", "path": "/tmp/run.jsonl"}`` — the same lines appended to a file;
- ``{"kind": "db", "job_id": "…"}`` — ``backend.jobs.db_sink.DbSink(**spec)`` (imported lazily);
- ``{"kind": "tune", "job_id": "…"}`` — a sweep trial's ``DbSink`` that also reports validation
  losses to Ray Tune (``ray_jobs.worker.tune_sink.TuneSink``);
- ``{"kind": "collect"}`` — an in-memory :class:`CollectingSink` (tests, single process only);
- ``{"kind": "null"}`` — drops everything (what ranks other than 0 use).

Metric points are buffered by the caller (:class:`MetricBuffer`) and handed over in batches, so a
database sink writes a few rows every N steps or T seconds rather than one per step.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol, TextIO, runtime_checkable

from backend.core.errors import InvalidInput

STAGES = ("queued", "initializing", "training", "validating", "saving", "completed")
METRIC_FIELDS = ("epoch", "step", "training_loss", "validation_loss", "learning_rate",
                 "gradient_norm", "throughput", "gpu_utilization", "tokens_processed", "timestamp")


@runtime_checkable
class ProgressSink(Protocol):
    """What a training run reports. Implementations must not raise on bad connectivity in a way
    that kills training; they may log and drop. Timestamps are ISO-8601 UTC strings."""

    def stage(self, stage: str) -> None:
        """The job entered ``stage`` (one of :data:`STAGES`)."""

    def log(self, level: str, message: str, **meta: Any) -> None:
        """A job log line; ``level`` is debug/info/warning/error."""

    def metrics(self, points: list[dict[str, Any]]) -> None:
        """A batch of metric points, each with the keys in :data:`METRIC_FIELDS`."""

    def progress(self, epoch: int, step: int, total_steps: int, percent: float,
                 current_metrics: dict[str, Any], eta_s: float | None) -> None:
        """Where the run is now; ``current_metrics`` is the latest metric point."""

    def checkpoint(self, step: int, epoch: int, loss: float | None, uri: str,
                   size_bytes: int) -> None:
        """A checkpoint was persisted at ``uri``."""

    def samples(self, step: int, items: list[dict[str, Any]]) -> None:
        """Greedy answers to the fixed validation prompts at an evaluation (step 0: the base
        model's), each ``{index, question, prompt, reference, answer}``
        (``ray_jobs/worker/samples.py``)."""

    def resumed(self, step: int, epoch: int) -> None:
        """The run restarted from a checkpoint at ``step``: metric points with a larger step sent
        before the restart are obsolete (they will be sent again)."""

    def completed(self, result: dict[str, Any]) -> None:
        """The run finished; ``result`` is the training result (see ``docs/training.md``)."""

    def failed(self, message: str, stack: str) -> None:
        """The run failed for good (after Ray's retries)."""


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string (metric point timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class JsonLinesSink:
    """Writes every event as one JSON object per line: ``{"event": name, ...fields}``."""

    def __init__(self, stream: TextIO | None = None, path: str | Path | None = None):
        self._path = Path(path) if path else None
        self._stream = stream
        self._lock = threading.Lock()

    def _emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            if self._path is not None:
                with open(self._path, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
            else:
                stream = self._stream or sys.stdout
                stream.write(line + "\n")
                stream.flush()

    def stage(self, stage: str) -> None:
        self._emit("stage", stage=stage)

    def log(self, level: str, message: str, **meta: Any) -> None:
        self._emit("log", level=level, message=message, meta=meta)

    def metrics(self, points: list[dict[str, Any]]) -> None:
        self._emit("metrics", points=points)

    def progress(self, epoch: int, step: int, total_steps: int, percent: float,
                 current_metrics: dict[str, Any], eta_s: float | None) -> None:
        self._emit("progress", epoch=epoch, step=step, total_steps=total_steps, percent=percent,
                   current_metrics=current_metrics, eta_s=eta_s)

    def checkpoint(self, step: int, epoch: int, loss: float | None, uri: str,
                   size_bytes: int) -> None:
        self._emit("checkpoint", step=step, epoch=epoch, loss=loss, uri=uri, size_bytes=size_bytes)

    def samples(self, step: int, items: list[dict[str, Any]]) -> None:
        self._emit("samples", step=step, items=items)

    def resumed(self, step: int, epoch: int) -> None:
        self._emit("resumed", step=step, epoch=epoch)

    def completed(self, result: dict[str, Any]) -> None:
        self._emit("completed", result=result)

    def failed(self, message: str, stack: str) -> None:
        self._emit("failed", message=message, stack=stack)


class PrintSink(JsonLinesSink):
    """JSON lines on stdout (or ``stream``): what a run started by hand shows."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__(stream=stream)


@dataclass
class CollectingSink:
    """Keeps every event in memory (tests). ``events`` is ``[(name, payload), ...]`` in order."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def _add(self, name: str, **payload: Any) -> None:
        self.events.append((name, payload))

    def of(self, name: str) -> list[dict[str, Any]]:
        """Payloads of all events called ``name``."""
        return [payload for event, payload in self.events if event == name]

    @property
    def points(self) -> list[dict[str, Any]]:
        """Every metric point received, in order."""
        return [p for payload in self.of("metrics") for p in payload["points"]]

    def stage(self, stage: str) -> None:
        self._add("stage", stage=stage)

    def log(self, level: str, message: str, **meta: Any) -> None:
        self._add("log", level=level, message=message, meta=meta)

    def metrics(self, points: list[dict[str, Any]]) -> None:
        self._add("metrics", points=list(points))

    def progress(self, epoch: int, step: int, total_steps: int, percent: float,
                 current_metrics: dict[str, Any], eta_s: float | None) -> None:
        self._add("progress", epoch=epoch, step=step, total_steps=total_steps, percent=percent,
                  current_metrics=current_metrics, eta_s=eta_s)

    def checkpoint(self, step: int, epoch: int, loss: float | None, uri: str,
                   size_bytes: int) -> None:
        self._add("checkpoint", step=step, epoch=epoch, loss=loss, uri=uri, size_bytes=size_bytes)

    def samples(self, step: int, items: list[dict[str, Any]]) -> None:
        self._add("samples", step=step, items=list(items))

    def resumed(self, step: int, epoch: int) -> None:
        self._add("resumed", step=step, epoch=epoch)

    def completed(self, result: dict[str, Any]) -> None:
        self._add("completed", result=result)

    def failed(self, message: str, stack: str) -> None:
        self._add("failed", message=message, stack=stack)


class NullSink:
    """Drops everything (ranks other than 0)."""

    def stage(self, stage: str) -> None: ...
    def log(self, level: str, message: str, **meta: Any) -> None: ...
    def metrics(self, points: list[dict[str, Any]]) -> None: ...
    def progress(self, epoch, step, total_steps, percent, current_metrics, eta_s) -> None: ...
    def checkpoint(self, step, epoch, loss, uri, size_bytes) -> None: ...
    def samples(self, step: int, items: list[dict[str, Any]]) -> None: ...
    def resumed(self, step: int, epoch: int) -> None: ...
    def completed(self, result: dict[str, Any]) -> None: ...
    def failed(self, message: str, stack: str) -> None: ...


def _db_sink(spec: dict[str, Any]) -> ProgressSink:
    from backend.jobs.db_sink import DbSink  # lazy: only jobs launched by the product have a DB

    return DbSink(**{k: v for k, v in spec.items() if k != "kind"})


def _tune_sink(spec: dict[str, Any]) -> ProgressSink:
    from ray_jobs.worker.tune_sink import TuneSink  # a sweep's trial (ray_jobs/sweep.py)

    return TuneSink(**{k: v for k, v in spec.items() if k != "kind"})


SINK_KINDS: dict[str, Callable[[dict[str, Any]], ProgressSink]] = {
    "print": lambda spec: PrintSink(),
    "jsonl": lambda spec: JsonLinesSink(path=spec["path"]),
    "collect": lambda spec: CollectingSink(),
    "null": lambda spec: NullSink(),
    "db": _db_sink,
    "tune": _tune_sink,
}


def make_sink(spec: dict[str, Any] | ProgressSink | None) -> ProgressSink:
    """Build the sink described by ``spec`` (see module docstring); ``None`` means print.

    An object that already implements :class:`ProgressSink` is returned as is (single-process use).
    Raises InvalidInput for an unknown kind or a missing field (e.g. ``path`` for jsonl).
    """
    if spec is None:
        return PrintSink()
    if not isinstance(spec, dict):
        if isinstance(spec, ProgressSink):
            return spec
        raise InvalidInput(f"sink spec must be a dict, got {type(spec).__name__}")
    kind = spec.get("kind", "print")
    if kind not in SINK_KINDS:
        raise InvalidInput(f"unknown sink kind {kind!r}; known: {', '.join(SINK_KINDS)}",
                           code="unknown_sink")
    try:
        return SINK_KINDS[kind](spec)
    except KeyError as exc:
        raise InvalidInput(f"sink kind {kind!r} needs the field {exc.args[0]!r}",
                           code="unknown_sink") from None


class MetricBuffer:
    """Collects metric points on rank 0 and hands them to the sink every ``every_steps`` points or
    ``every_s`` seconds (whichever first), followed by a ``progress`` call; the very first point
    goes out at once (time to first metric). ``min_interval_s``: with fast steps, a full buffer
    waits until that long after the last flush (a write costs ~10 ms whatever the step time, so
    the share of time spent writing stays ≤ write / min_interval). ``flush()`` forces it."""

    def __init__(self, sink: ProgressSink, every_steps: int = 10, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, min_interval_s: float = 0.0):
        self.sink, self.every_steps, self.every_s, self._clock = sink, every_steps, every_s, clock
        self.min_interval_s = min_interval_s
        self._points: list[dict[str, Any]] = []
        self._last_flush = clock()
        self._progress: tuple | None = None
        self._flushed_any = False

    def add(self, point: dict[str, Any], progress: tuple | None = None) -> None:
        """Buffer one point; ``progress`` is the argument tuple for ``sink.progress``."""
        self._points.append(point)
        self._progress = progress or self._progress
        elapsed = self._clock() - self._last_flush
        first = not self._flushed_any  # the first point goes out at once: the page shows life early
        full = len(self._points) >= self.every_steps and elapsed >= self.min_interval_s
        if first or full or elapsed >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Send buffered points (if any) and the latest progress."""
        if self._points:
            self.sink.metrics(self._points)
            self._points = []
            self._flushed_any = True
        if self._progress is not None:
            self.sink.progress(*self._progress)
            self._progress = None
        self._last_flush = self._clock()
