"""The open-model load runner shared by the load generators in loadtest/.

A scenario (YAML or JSON, see loadtest/scenarios/) names stages: `ramp` (rate_from → rate_to), `steady` and
`spike` (a fixed rate), each with a duration. Arrivals are scheduled from the rate alone (open model: a slow
server does not slow the arrivals down); at most `concurrency` requests are in flight, and an arrival that finds
them all busy waits, its latency counted from when it was *scheduled* (no coordinated omission). Latencies go
into HDR histograms per stage; a progress line is printed every `progress_s` seconds, and `summary()` gives the
figures as a dict (written as JSON by the generators).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
import yaml
from hdrh.histogram import HdrHistogram
from pydantic import BaseModel, Field, model_validator


class Stage(BaseModel):
    name: str
    kind: Literal["ramp", "steady", "spike"] = "steady"
    duration_s: float = Field(gt=0)
    # Arrivals per second (ramp: from rate_from to rate_to).
    rate: float | None = Field(default=None, ge=0)
    rate_from: float | None = Field(default=None, ge=0)
    rate_to: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _rates(self) -> Stage:
        if self.kind == "ramp" and (self.rate_from is None or self.rate_to is None):
            raise ValueError(f"ramp stage {self.name!r} needs rate_from and rate_to")
        if self.kind != "ramp" and self.rate is None:
            raise ValueError(f"stage {self.name!r} needs a rate")
        return self

    def rate_at(self, t: float) -> float:
        if self.kind == "ramp":
            assert self.rate_from is not None and self.rate_to is not None
            return self.rate_from + (self.rate_to - self.rate_from) * min(t / self.duration_s, 1.0)
        assert self.rate is not None
        return self.rate


class Scenario(BaseModel):
    name: str
    description: str = ""
    stages: list[Stage]
    # Requests in flight at most (arrivals beyond wait, their latency still counted from their schedule).
    concurrency: int = Field(default=64, ge=1, le=10_000)
    progress_s: float = Field(default=2.0, gt=0)
    # Generator-specific settings (cameras, batch sizes, query mix, ...).
    options: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Scenario:
        text = path.read_text()
        return cls.model_validate(json.loads(text) if path.suffix == ".json" else yaml.safe_load(text))

    def scaled(self, rate_factor: float, time_factor: float) -> Scenario:
        """The same shape at other rates and durations (quick runs: --rate-scale / --time-scale)."""
        stages = []
        for s in self.stages:
            stages.append(s.model_copy(update={
                "duration_s": s.duration_s * time_factor,
                **{k: getattr(s, k) * rate_factor for k in ("rate", "rate_from", "rate_to") if getattr(s, k)}}))
        return self.model_copy(update={"stages": stages})


def histogram() -> HdrHistogram:
    return HdrHistogram(1, 600_000_000, 3)  # microseconds, 1 µs to 10 min


def quantiles(h: HdrHistogram) -> dict[str, float]:
    if h.get_total_count() == 0:
        return {}
    return {f"p{q:g}_ms": round(h.get_value_at_percentile(q) / 1000, 2) for q in (50, 90, 95, 99, 99.9)} | {
        "max_ms": round(h.get_max_value() / 1000, 2), "mean_ms": round(h.get_mean_value() / 1000, 2)}


@dataclass
class StageStats:
    name: str
    target_rate: str
    started: float = 0.0
    ended: float = 0.0
    sent: int = 0  # arrivals scheduled in this stage
    ok: int = 0  # requests that completed successfully during this stage
    units: int = 0  # what they carried (reads, frames)
    errors: Counter[str] = field(default_factory=Counter)  # failures during this stage
    waited: int = 0  # arrivals that found `concurrency` requests in flight
    latency: HdrHistogram = field(default_factory=histogram)
    cpu_start: dict[str, float] = field(default_factory=dict)
    cpu_percent: dict[str, float] = field(default_factory=dict)  # of one core, per process, over the stage

    def summary(self) -> dict[str, Any]:
        seconds = max(self.ended - self.started, 1e-9)
        return {"stage": self.name, "target_rate": self.target_rate, "seconds": round(seconds, 1),
                "sent": self.sent, "ok": self.ok, "errors": dict(self.errors), "waited_for_concurrency": self.waited,
                "requests_per_s": round(self.ok / seconds, 1), "units": self.units,
                "units_per_s": round(self.units / seconds, 1), "latency": quantiles(self.latency),
                "cpu_percent_of_one_core": self.cpu_percent}


# One request: called with its sequence number; returns how many units (reads, frames) it carried.
Request = Callable[[int], Awaitable[int]]


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process and its descendants (Linux /proc): the
    Triton launcher's tritonserver and its Python backends count as "triton"."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parent[pid], used[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])) / tick

    def root_of(pid: int) -> int | None:
        roots = set(pids.values())
        while pid and pid not in roots:
            pid = parent.get(pid, 0)
        return pid or None

    by_pid = {pid: name for name, pid in pids.items()}
    out: dict[str, float] = {}
    for pid, seconds in used.items():
        if (root := root_of(pid)) is not None:
            out[by_pid[root]] = out.get(by_pid[root], 0.0) + seconds
    return out


class OpenLoop:
    """Runs one request function through a scenario's stages (open model) and keeps the figures."""

    def __init__(self, label: str, scenario: Scenario, request: Request, out=sys.stderr,
                 processes: dict[str, int] | None = None):
        """`processes`: name -> pid whose CPU use is reported per stage (this process is always included)."""
        self.label = label
        self._pids = {"load generator": os.getpid(), **(processes or {})}
        self.scenario = scenario
        self._request = request
        self._out = out
        self.stages: list[StageStats] = []
        self._slots = asyncio.Semaphore(scenario.concurrency)
        self._in_flight = 0
        self._seq = 0

    async def _one(self, stats: StageStats, scheduled: float) -> None:
        """One arrival of `stats`' stage. Its latency counts for that stage; its completion (throughput) for
        the stage running when it completes."""
        if self._slots.locked():
            stats.waited += 1
        async with self._slots:
            self._in_flight += 1
            try:
                units = await self._request(self._seq_next())
            except grpc.aio.AioRpcError as exc:
                self.stages[-1].errors[exc.code().name] += 1
            except Exception as exc:  # noqa: BLE001 - a load generator counts failures, whatever they are
                self.stages[-1].errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
            else:
                self.stages[-1].ok += 1
                self.stages[-1].units += units
            finally:
                self._in_flight -= 1
        stats.latency.record_value(max(1, int((time.perf_counter() - scheduled) * 1e6)))

    def _seq_next(self) -> int:
        self._seq += 1
        return self._seq

    async def run(self) -> list[StageStats]:
        tasks: set[asyncio.Task] = set()
        for stage in self.scenario.stages:
            target = (f"{stage.rate_from:g}->{stage.rate_to:g}/s" if stage.kind == "ramp" else f"{stage.rate:g}/s")
            stats = self._start_stage(f"{stage.name} ({stage.kind})", target)
            reporter = asyncio.create_task(self._progress(stats, stage))
            start = stats.started
            next_at = start
            while (t := next_at - start) < stage.duration_s:
                rate = stage.rate_at(t)
                if rate <= 0:
                    next_at += 0.1
                    await asyncio.sleep(0.1)
                    continue
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._one(stats, next_at))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                stats.sent += 1
                next_at += 1.0 / rate
            self._end_stage(stats)
            reporter.cancel()
        if tasks:  # the backlog's completions count in a last "drain" stage
            drain = self._start_stage("drain", "0/s")
            await asyncio.gather(*tasks)
            self._end_stage(drain)
        return self.stages

    def _start_stage(self, name: str, target: str) -> StageStats:
        stats = StageStats(name, target, started=time.perf_counter(), cpu_start=cpu_seconds(self._pids))
        self.stages.append(stats)
        return stats

    def _end_stage(self, stats: StageStats) -> None:
        stats.ended = time.perf_counter()
        seconds = max(stats.ended - stats.started, 1e-9)
        stats.cpu_percent = {name: round(100 * (used - stats.cpu_start[name]) / seconds, 1)
                             for name, used in cpu_seconds(self._pids).items() if name in stats.cpu_start}

    async def _progress(self, stats: StageStats, stage: Stage) -> None:
        last_ok, last_units, last_t = 0, 0, time.perf_counter()
        while True:
            await asyncio.sleep(self.scenario.progress_s)
            now = time.perf_counter()
            dt = now - last_t
            p95 = stats.latency.get_value_at_percentile(95) / 1000 if stats.latency.get_total_count() else 0
            elapsed = now - stats.started
            print(f"[{self.label}] {stats.name} t={elapsed:5.0f}s target {stage.rate_at(elapsed):7.0f}/s "
                  f"done {(stats.ok - last_ok) / dt:7.0f}/s units {(stats.units - last_units) / dt:8.0f}/s "
                  f"in-flight {self._in_flight:4d} p95 {p95:7.1f} ms errors {sum(stats.errors.values())}",
                  file=self._out, flush=True)
            last_ok, last_units, last_t = stats.ok, stats.units, now

    def summary(self) -> dict[str, Any]:
        total = histogram()
        for s in self.stages:
            total.add(s.latency)
        return {"generator": self.label, "scenario": self.scenario.name, "concurrency": self.scenario.concurrency,
                "stages": [s.summary() for s in self.stages], "latency_all": quantiles(total)}


def write_summary(summary: dict[str, Any], path: Path | None) -> None:
    text = json.dumps(summary, indent=2, default=str)
    print(text)
    if path is not None:
        path.write_text(text + "\n")
