"""Per-agency per-day counters for the transparency portal, in Redis.

`sightline:count:reads:<agency>:<yyyy-mm-dd>` (INCRBY, reads stored) and
`sightline:hll:vehicles:<agency>:<yyyy-mm-dd>` (PFADD of plate_normalized: unique plates, a HyperLogLog
with ~0.8 % standard error). The day is the UTC capture day; both keys expire `ttl_days` after their last
write (at least the agency's retention plus ten days, so that the retention report can read them).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from sightline.common.v1 import read_pb2


def reads_key(agency_id: str, day: str) -> str:
    return f"sightline:count:reads:{agency_id}:{day}"


def vehicles_key(agency_id: str, day: str) -> str:
    return f"sightline:hll:vehicles:{agency_id}:{day}"


class ReadCounters:
    def __init__(self, client: aioredis.Redis, ttl_days: int):
        self._client = client
        self._ttl_days = ttl_days

    async def count(self, agency_id: str, day: str, reads: Sequence[read_pb2.Read], retention_days: int) -> None:
        ttl = 86400 * max(self._ttl_days, retention_days + 10)
        plates = [r.plate_normalized for r in reads if r.plate_normalized]
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.incrby(reads_key(agency_id, day), len(reads))
            pipe.expire(reads_key(agency_id, day), ttl)
            if plates:
                pipe.pfadd(vehicles_key(agency_id, day), *plates)
                pipe.expire(vehicles_key(agency_id, day), ttl)
            await pipe.execute()
