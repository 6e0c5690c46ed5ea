"""Prometheus metrics shared by several services (a service's own metrics live next to its code).

Read-stream backlog: `XINFO GROUPS` reports, per consumer group of a stream, `lag` (entries not yet delivered
to the group; Redis >= 7) and `pending` (delivered to a consumer, not yet acknowledged). Every process that
consumes the stream (the hotlist matcher, the tracker) samples it with `watch_stream_backlog`; replicas report
the same figures, so dashboards take `max by (stream, group)`. Redis answers a nil lag when it cannot count
the entries (one was deleted with XDEL past the group's position): the gauge is then NaN. Entries trimmed by
MAXLEN before a slow group read them still count in its lag, so a lag near the stream's MAXLEN means loss.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.exceptions import ResponseError

log = logging.getLogger(__name__)

STREAM_LAG = Gauge("sightline_stream_lag", "Stream entries not yet delivered to the consumer group (XINFO GROUPS lag)",
                   ["stream", "group"])
STREAM_PENDING = Gauge("sightline_stream_pending", "Stream entries delivered to the group but not acknowledged",
                       ["stream", "group"])
STREAM_SAMPLE_INTERVAL_S = 10.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def group_backlog(groups: Sequence[Mapping[Any, Any]]) -> dict[str, tuple[float, int]]:
    """{group: (lag, pending)} from an XINFO GROUPS reply; lag is NaN where Redis cannot tell."""
    out: dict[str, tuple[float, int]] = {}
    for group in groups:
        fields = {_text(k): v for k, v in group.items()}
        lag = fields.get("lag")
        out[_text(fields["name"])] = (math.nan if lag is None else float(lag), int(fields["pending"]))
    return out


async def sample_stream_backlog(redis: aioredis.Redis, stream: str) -> dict[str, tuple[float, int]]:
    """Sets the gauges of every consumer group of `stream` once; returns what it set."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise
        groups = []  # the stream does not exist yet: no group to report
    backlog = group_backlog(groups)
    for group, (lag, pending) in backlog.items():
        STREAM_LAG.labels(stream, group).set(lag)
        STREAM_PENDING.labels(stream, group).set(pending)
    return backlog


async def watch_stream_backlog(redis: aioredis.Redis, stream: str,
                               interval_s: float = STREAM_SAMPLE_INTERVAL_S) -> None:
    """Samples the stream's consumer groups every `interval_s` until cancelled (a background task)."""
    while True:
        try:
            await sample_stream_backlog(redis, stream)
        except Exception as exc:  # noqa: BLE001 - Redis down: health reports it; sample again next round
            log.warning("stream backlog sample failed", extra={"stream": stream, "error": repr(exc)[:200]})
        await asyncio.sleep(interval_s)
