from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.auth import KeySettings
from services.common.settings import MongoSettings, RedisSettings, ServiceSettings
from services.common.streams import ConsumerSettings


class MatcherConsumer(ConsumerSettings):
    group: str = Field(
        default="hotlist-matcher",
        description="Consumer group of the matcher on the pass stream; every matcher replica joins it.")


class HotlistSettings(ServiceSettings, MongoSettings, RedisSettings, KeySettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True, env_nested_delimiter="__")

    service_name: str = Field(default="hotlist", description="Name of this service in its logs, traces and tokens.")
    grpc_port: int = Field(default=50053, ge=1, le=65535, description="Port of the hotlist service's gRPC server.")
    matcher_enabled: bool = Field(
        default=True,
        description="Run the pass-stream matcher in this process (turn off for API-only replicas).")
    pass_stream: str = Field(
        default="sightline:passes:v1",
        description="Redis stream of vehicle passes published by the tracker, which the matcher consumes.")
    matcher: MatcherConsumer = Field(
        default_factory=MatcherConsumer,
        description="How the matcher reads the pass stream (SIGHTLINE_MATCHER__GROUP, __START_ID, __BATCH, ...).")
    hotlist_key_prefix: str = Field(
        default="sightline:hotlist", description="Prefix of the Redis keys that hold the active list versions.")
    alert_channel: str = Field(
        default="sightline:hotlist:alerts",
        description="Redis pub/sub channel carrying raised alerts to every replica's SubscribeAlerts streams.")
    max_import_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="Largest hot file, in bytes, that ImportList accepts.")
    backsearch_max_alerts: int = Field(
        default=1000, ge=1,
        description="A back-search of past reads (BackSearch) stops, truncated, once it has found this many matches.")
    backsearch_timeout_ms: int = Field(
        default=30_000, ge=100, description="Milliseconds of MongoDB time one back-search query may take.")
    wildcard_min_fixed: int = Field(
        default=4, ge=1, le=12,
        description="Letters and digits a partial plate ('AB?12*') must fix; a leading '?' or '*' is always "
                    "refused (INVALID_ARGUMENT, or a rejected line in an import).")
    wildcard_max_per_list: int = Field(
        default=100, ge=0,
        description="Partial plates one list may hold; AddEntry beyond it is INVALID_ARGUMENT, an import rejects "
                    "the lines beyond it.")
    sharing_refresh_s: float = Field(
        default=10.0, gt=0, le=300,
        description="How often the matcher re-reads the agencies' hot-list sharing (agencies.hotlist_share_with): "
                    "a granted or withdrawn sharing takes effect within this time.")
    subscriber_queue: int = Field(
        default=1000, ge=10,
        description="Alerts buffered for one SubscribeAlerts stream; a client that falls this far behind is "
                    "disconnected.")
    replay_max: int = Field(default=500, ge=1, le=10_000,
                            description="Most alerts a SubscribeAlerts replay sends: the newest of those raised since "
                                        "the asked instant (a console page shows the recent ones, not a day's flood).")
    audit_address: str = Field(
        default="127.0.0.1:50054",
        description="Audit service (host:port); list changes and alert workflow steps are recorded there before "
                    "they take effect.")
    audit_timeout_s: float = Field(
        default=3.0, gt=0, le=30, description="Deadline, in seconds, of one call to the audit service.")

