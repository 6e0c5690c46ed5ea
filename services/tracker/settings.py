from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import MongoSettings, RedisSettings, ServiceSettings
from services.common.streams import ConsumerSettings
from services.tracker.domain.passes import TrackerConfig


class TrackerConsumer(ConsumerSettings):
    group: str = Field(
        default="pass-tracker",
        description="Consumer group on the read stream; each pass's reads stay unacknowledged until the pass is "
                    "stored and published, so a crashed tracker's open passes are rebuilt from its pending reads "
                    "(run one replica: reads of one camera must reach one consumer).")
    consumer: str = Field(
        default="tracker",
        description="Fixed consumer name, so a restarted tracker re-reads its own pending reads first, in stream "
                    "order, and rebuilds its open passes with their ids; empty: host name and process id.")


class TrackerSettings(ServiceSettings, MongoSettings, RedisSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True, env_nested_delimiter="__")

    service_name: str = Field(default="tracker", description="Name of this service in its logs, traces and tokens.")
    grpc_port: int = Field(
        default=50057, ge=1, le=65535, description="Port of the tracker's gRPC server (it serves health only).")
    pass_stream: str = Field(
        default="sightline:passes:v1",
        description="Redis stream on which grouped vehicle passes are published (consumed by the hotlist matcher).")
    pass_stream_maxlen: int = Field(
        default=1_000_000, ge=1000,
        description="Approximate number of entries the pass stream is trimmed to as passes are published.")
    tracker: TrackerConsumer = Field(
        default_factory=TrackerConsumer,
        description="How the tracker reads the read stream (SIGHTLINE_TRACKER__GROUP, __START_ID, __BATCH, ...).")
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

