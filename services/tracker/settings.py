from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from services.common.settings import MongoSettings, RedisSettings, ServiceSettings
from services.common.streams import ConsumerConfig
from services.tracker.domain.passes import TrackerConfig


class TrackerSettings(ServiceSettings, MongoSettings, RedisSettings):
    service_name: str = "tracker"
    # gRPC serves health only.
    grpc_port: int = Field(default=50057, ge=1, le=65535)
    # Where grouped passes are published (consumed by the hotlist matcher).
    pass_stream: str = "sightline:passes:v1"
    pass_stream_maxlen: int = Field(default=1_000_000, ge=1000)
    # Consumer group on the read stream. The tracker keeps each pass's reads unacknowledged until the pass is
    # stored and published, so a crashed tracker's open passes are rebuilt from its pending reads. Run one
    # replica: reads of one camera must reach one consumer.
    tracker_group: str = "pass-tracker"
    # A fixed consumer name: a restarted tracker re-reads its own pending reads first, in stream order, so
    # its open passes are rebuilt from their first reads (and keep their ids). Empty: host name and pid.
    tracker_consumer: str = "tracker"
    tracker_start_id: str = "$"
    tracker_batch: int = Field(default=200, ge=1, le=10_000)
    tracker_block_ms: int = Field(default=200, ge=10, le=5000)
    # Reads pending this long with a consumer are taken over (a dead predecessor's; the tracker's own reads
    # of open passes are recognised and left alone). Longer than the gap, so live passes are rarely claimed.
    tracker_claim_idle_ms: int = Field(default=30_000, ge=100)
    tracker_claim_interval_s: float = Field(default=5.0, gt=0)
    # A pass closes after this long without a sighting, or once it has lasted pass_max_s.
    pass_gap_s: float = Field(default=3.0, gt=0, le=600)
    pass_max_s: float = Field(default=60.0, gt=0, le=3600)
    # The first read at least this confident is published at once as the pass's preview.
    preview_confidence: float = Field(default=0.8, ge=0, le=1)
    # Camera bearings are cached this long.
    camera_cache_s: float = Field(default=60.0, ge=0)

    def tracker_config(self) -> TrackerConfig:
        return TrackerConfig(gap=timedelta(seconds=self.pass_gap_s), max_duration=timedelta(seconds=self.pass_max_s),
                             preview_confidence=self.preview_confidence)

    def tracker_consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(stream=self.read_stream, group=self.tracker_group, consumer=self.tracker_consumer,
                              start_id=self.tracker_start_id, batch=self.tracker_batch,
                              block_ms=self.tracker_block_ms, claim_idle_ms=self.tracker_claim_idle_ms,
                              claim_interval_s=self.tracker_claim_interval_s)
