"""Raised alerts to every replica's SubscribeAlerts streams, over Redis pub/sub.

The matcher that raises an alert may run in another replica than the client's stream, so alerts travel
through one channel; each process fans them out to its local subscribers. Pub/sub is at-most-once: a client
that reconnects asks for `replay_since` and gets the stored alerts it missed. Each message is the W3C trace
context as one JSON line, then the serialised Alert, so the delivery joins the trace of the read that matched.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject

from sightline.hotlist.v1 import hotlist_pb2

log = logging.getLogger(__name__)


class Subscriber:
    def __init__(self, accept: Callable[[hotlist_pb2.Alert], bool], maxsize: int):
        self.accept = accept
        self.queue: asyncio.Queue[tuple[hotlist_pb2.Alert, Context] | None] = asyncio.Queue(maxsize)


class AlertBus:
    def __init__(self, client: aioredis.Redis, channel: str, queue_size: int):
        self._r = client
        self._channel = channel
        self._queue_size = queue_size
        self._subscribers: set[Subscriber] = set()

    async def publish(self, alerts: list[hotlist_pb2.Alert]) -> None:
        if not alerts:
            return
        carrier: dict[str, str] = {}
        inject(carrier)
        header = json.dumps(carrier).encode() + b"\n"
        async with self._r.pipeline(transaction=False) as pipe:
            for alert in alerts:
                pipe.publish(self._channel, header + alert.SerializeToString())
            await pipe.execute()

    @contextmanager
    def subscribe(self, accept: Callable[[hotlist_pb2.Alert], bool]) -> Iterator[Subscriber]:
        sub = Subscriber(accept, self._queue_size)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def _fan_out(self, message: bytes) -> None:
        header, _, body = message.partition(b"\n")
        alert, context = hotlist_pb2.Alert.FromString(body), extract(json.loads(header))
        for sub in list(self._subscribers):
            if not sub.accept(alert):
                continue
            try:
                sub.queue.put_nowait((alert, context))
            except asyncio.QueueFull:
                log.warning("alert subscriber too slow; disconnecting it")
                self._subscribers.discard(sub)
                sub.queue.get_nowait()
                sub.queue.put_nowait(None)

    async def run(self) -> None:
        """Listens on the channel until cancelled, re-subscribing after a lost connection."""
        while True:
            try:
                async with self._r.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._fan_out(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis lost: clients replay what they missed
                log.warning("alert channel lost; re-subscribing", extra={"error": repr(exc)[:200]})
                await asyncio.sleep(1)
