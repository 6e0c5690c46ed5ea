from __future__ import annotations

from pydantic import Field

from services.common.auth import KeySettings
from services.common.settings import MongoSettings, RedisSettings, ServiceSettings
from services.common.streams import ConsumerConfig


class HotlistSettings(ServiceSettings, MongoSettings, RedisSettings, KeySettings):
    service_name: str = "hotlist"
    grpc_port: int = Field(default=50053, ge=1, le=65535)
    # Run the pass-stream matcher in this process (turn off for API-only replicas).
    matcher_enabled: bool = True
    # The tracker's stream of vehicle passes (services/tracker), which the matcher consumes.
    pass_stream: str = "sightline:passes:v1"
    # Consumer group on the pass stream; every matcher replica joins it.
    matcher_group: str = "hotlist-matcher"
    # This replica's consumer name; empty: host name and process id (a restarted process is a new consumer
    # and takes over its predecessor's pending passes through XAUTOCLAIM).
    matcher_consumer: str = ""
    # Where a new consumer group starts: "$" only reads published from now on, "0" the whole stream.
    matcher_start_id: str = "$"
    matcher_batch: int = Field(default=200, ge=1, le=10_000)
    # XREADGROUP block time; also the longest a list change waits before the index is refreshed.
    matcher_block_ms: int = Field(default=200, ge=10, le=5000)
    # Passes pending longer than this with another consumer (one that died) are claimed.
    matcher_claim_idle_ms: int = Field(default=30_000, ge=100)
    matcher_claim_interval_s: float = Field(default=5.0, gt=0)
    # Redis keys of the active list versions.
    hotlist_key_prefix: str = "sightline:hotlist"
    # Redis pub/sub channel carrying raised alerts to every replica's SubscribeAlerts streams.
    alert_channel: str = "sightline:hotlist:alerts"
    # Largest hot file ImportList accepts.
    max_import_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    # Back-search of past reads (BackSearch): at most this many alerts, this much MongoDB time.
    backsearch_max_alerts: int = Field(default=1000, ge=1)
    backsearch_timeout_ms: int = Field(default=30_000, ge=100)
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
    # Buffer of a SubscribeAlerts stream; a client that falls this far behind is disconnected.
    subscriber_queue: int = Field(default=1000, ge=10)
    replay_max: int = Field(default=500, ge=1, le=10_000,
                            description="Most alerts a SubscribeAlerts replay sends: the newest of those raised since "
                                        "the asked instant (a console page shows the recent ones, not a day's flood).")
    # The audit service: list changes and alert workflow steps are recorded there before they take effect.
    audit_address: str = "127.0.0.1:50054"
    audit_timeout_s: float = Field(default=3.0, gt=0, le=30)

    def matcher_consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(stream=self.pass_stream, group=self.matcher_group, consumer=self.matcher_consumer,
                              start_id=self.matcher_start_id, batch=self.matcher_batch,
                              block_ms=self.matcher_block_ms, claim_idle_ms=self.matcher_claim_idle_ms,
                              claim_interval_s=self.matcher_claim_interval_s)
