"""The tracker process: the read-stream consumer that groups reads into passes, behind a health-only gRPC
server (its state is its dependencies' and the consumer's; passes are read from MongoDB or the pass stream)."""

from __future__ import annotations

import grpc

from services.common.grpc_server import ServiceSpec, retry_until_done
from services.common.metrics import watch_stream_backlog
from services.common.storage import mongo_client, mongo_database, mongo_dependency, redis_client, redis_dependency
from services.common.streams import ConsumerGroup
from services.tracker.adapters.store import PassStore
from services.tracker.adapters.stream import PassPublisher
from services.tracker.service_layer.pass_builder import PassBuilder
from services.tracker.settings import TrackerSettings


async def make_spec(settings: TrackerSettings) -> ServiceSpec:
    mongo = mongo_client(settings)
    db = mongo_database(mongo, settings)
    redis = redis_client(settings)
    store = PassStore(db, settings.camera_cache_s)
    builder = PassBuilder(ConsumerGroup(redis, settings.read_stream, settings.tracker), settings.tracker_config(),
                          store, PassPublisher(redis, settings.pass_stream, settings.pass_stream_maxlen))

    async def start_up() -> None:
        await retry_until_done("mongodb indexes", store.ensure_indexes)
        await builder.run()

    def register(server: grpc.aio.Server) -> None:
        """Health and reflection only (added by the bootstrap)."""

    return ServiceSpec(
        service_names=[],
        register=register,
        dependencies=[mongo_dependency(mongo), redis_dependency(redis)],
        background=[start_up, lambda: watch_stream_backlog(redis, settings.read_stream)],
        close=[redis.aclose, mongo.close],
    )
