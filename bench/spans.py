"""Where the time went: the services' own OpenTelemetry spans, read back from their logs.

The services trace every gRPC call they serve and make
(services/common/telemetry.py). A benchmark mesh started with a trace ratio
(BenchMesh(trace_ratio=...)) has the core services print a sampled share of
their spans with the console exporter; this reads them from the log files.
(The OTLP exporter cannot be used here: xds-protos, installed for Envoy's
ext_proc API, ships an older opentelemetry/proto that shadows the one the
exporter needs, so importing it fails.)
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Span:
    trace_id: str
    name: str  # for gRPC: the method, "/stratus.scheduler.v1.SchedulerService/SelectDestinations"
    server: bool  # served (True) or called (False)
    ms: float


def _ms(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000


def _parse(text: str) -> list[Span]:
    """Spans from a log: each is a JSON object printed from a line "{" to a line "}"."""
    spans, block = [], None
    for line in text.splitlines():
        if line == "{":
            block = [line]
        elif block is not None:
            block.append(line)
            if line == "}":
                span = json.loads("\n".join(block))
                block = None
                spans.append(
                    Span(
                        span["context"]["trace_id"],
                        span["name"],
                        span["kind"] == "SpanKind.SERVER",
                        _ms(span["start_time"], span["end_time"]),
                    )
                )
    return spans


class SpanLogs:
    """The spans services printed to their logs since the last mark()."""

    def __init__(self, logs: list[Path]) -> None:
        self._logs = logs
        self._offsets: dict[Path, int] = {}
        self.spans: list[Span] = []

    def mark(self) -> None:
        self._offsets = {log: log.stat().st_size if log.exists() else 0 for log in self._logs}

    def read(self) -> None:
        self.spans = []
        for log in self._logs:
            with open(log, "rb") as f:
                f.seek(self._offsets.get(log, 0))
                self.spans += _parse(f.read().decode(errors="replace"))

    def durations(self, method: str | tuple[str, ...], *, server: bool = True) -> list[float]:
        """Milliseconds of every span of this method (suffix match on the gRPC path)."""
        return [s.ms for s in self.spans if s.server == server and s.name.endswith(method)]

    def per_trace(self, methods: tuple[str, ...], *, server: bool = True) -> list[float]:
        """Per traced request: the total milliseconds spent in these methods."""
        totals: dict[str, float] = defaultdict(float)
        for s in self.spans:
            if s.server == server and s.name.endswith(methods):
                totals[s.trace_id] += s.ms
        return list(totals.values())
