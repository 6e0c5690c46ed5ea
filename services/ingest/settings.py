from __future__ import annotations

from pydantic import Field

from services.common.data_keys import DataKeySettings
from services.common.settings import MongoSettings, RedisSettings, RetentionPolicySettings, ServiceSettings


class IngestSettings(ServiceSettings, MongoSettings, RedisSettings, DataKeySettings, RetentionPolicySettings):
    service_name: str = "ingest"
    grpc_port: int = Field(default=50051, ge=1, le=65535)
    # Camera gateways connect with mutual TLS: their client certificate names their site (docs/security.md).
    tls_require_client_cert: bool = True
    # Triton's gRPC endpoint (host:port) and the per-frame pipeline model.
    triton_url: str = "127.0.0.1:8001"
    triton_model: str = "alpr"
    triton_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Frames larger than this (bytes of JPEG) or than this many pixels are refused.
    max_frame_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_frame_pixels: int = Field(default=4096 * 3072, ge=64 * 64)
    # Capture times further than this in the future (camera clock skew) are refused.
    max_clock_skew_s: float = Field(default=300.0, ge=0)
    # Days a read is kept after capture when its agency has set nothing (never above its state's cap; an
    # evidence hold keeps it longer).
    read_retention_days: int = Field(default=30, ge=1, le=3650)
    # Seconds a camera's or an agency's record (retention setting) is cached.
    record_cache_s: float = Field(default=10.0, ge=0, le=600)
    record_cache_size: int = Field(default=10_000, ge=1, le=1_000_000,
                                   description="Most camera and agency records held in that cache (registered "
                                               "cameras only: unknown ids are never cached).")
    # Per-agency per-day counters (reads, unique vehicles) for the transparency portal live this many days.
    counter_ttl_days: int = Field(default=40, ge=1, le=3650)
    # The audit service: camera registry changes and refusals are recorded there.
    audit_address: str = "127.0.0.1:50054"
    audit_timeout_s: float = Field(default=3.0, gt=0, le=30)
    # Frames processed at once per stream; acknowledgements still go out in order.
    stream_concurrency: int = Field(default=4, ge=1, le=64)
    # The outbox sweeper re-publishes stored frames whose reads never reached the stream.
    outbox_sweep_interval_s: float = Field(default=5.0, gt=0)
    outbox_min_age_s: float = Field(default=10.0, ge=0)
