from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from services.common.settings import MongoSettings, RedisSettings, ServiceSettings
from services.common.streams import ConsumerConfig
from services.tracker.domain.passes import TrackerConfig


class TrackerSettings(ServiceSettings, MongoSettings, RedisSettings):
    service_name: str = Field(default="tracker", description="Name of this service in its logs, traces and tokens.")
    grpc_port: int = Field(
        default=50057, ge=1, le=65535, description="Port of the tracker's gRPC server (it serves health only).")
    pass_stream: str = Field(
        default="sightline:passes:v1",
        description="Redis stream on which grouped vehicle passes are published (consumed by the hotlist matcher).")
    pass_stream_maxlen: int = Field(
        default=1_000_000, ge=1000,
        description="Approximate number of entries the pass stream is trimmed to as passes are published.")
    tracker_group: str = Field(
        default="pass-tracker",
        description="Consumer group on the read stream; each pass's reads stay unacknowledged until the pass is "
                    "stored and published, so a crashed tracker's open passes are rebuilt from its pending reads "
                    "(run one replica: reads of one camera must reach one consumer).")
    tracker_consumer: str = Field(
        default="tracker",
        description="Fixed consumer name, so a restarted tracker re-reads its own pending reads first, in stream "
                    "order, and rebuilds its open passes with their ids; empty: host name and process id.")
    tracker_start_id: str = Field(
        default="$",
        description="Where a newly created consumer group starts: \"$\" only reads published from then on, \"0\" "
                    "the whole stream.")
    tracker_batch: int = Field(
        default=200, ge=1, le=10_000, description="Reads the tracker reads or claims from the stream at once.")
    tracker_block_ms: int = Field(
        default=200, ge=10, le=5000,
        description="Milliseconds the tracker waits for new reads (XREADGROUP block) before it closes the passes "
                    "that are due.")
    tracker_claim_idle_ms: int = Field(
        default=30_000, ge=100,
        description="Milliseconds a read may stay pending with a consumer before it is taken over (a dead "
                    "predecessor's; the tracker's own reads of open passes are left alone); longer than the gap, so "
                    "live passes are rarely claimed.")
    tracker_claim_interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between the tracker's looks for reads to claim.")
    pass_gap_s: float = Field(
        default=3.0, gt=0, le=600, description="A pass closes after this many seconds without a sighting.")
    pass_max_s: float = Field(
        default=60.0, gt=0, le=3600, description="A pass closes once it has lasted this many seconds.")
    preview_confidence: float = Field(
        default=0.8, ge=0, le=1,
        description="The first read of a pass at least this confident (0 to 1) is published at once as its preview.")
    camera_cache_s: float = Field(
        default=60.0, ge=0, description="Seconds a camera's registered bearing is cached.")

    def tracker_config(self) -> TrackerConfig:
        return TrackerConfig(gap=timedelta(seconds=self.pass_gap_s), max_duration=timedelta(seconds=self.pass_max_s),
                             preview_confidence=self.preview_confidence)

    def tracker_consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(stream=self.read_stream, group=self.tracker_group, consumer=self.tracker_consumer,
                              start_id=self.tracker_start_id, batch=self.tracker_batch,
                              block_ms=self.tracker_block_ms, claim_idle_ms=self.tracker_claim_idle_ms,
                              claim_interval_s=self.tracker_claim_interval_s)
