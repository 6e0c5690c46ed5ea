from __future__ import annotations

from pydantic import Field

from services.common.data_keys import DataKeySettings
from services.common.settings import MongoSettings, RedisSettings, RetentionPolicySettings, ServiceSettings


class IngestSettings(ServiceSettings, MongoSettings, RedisSettings, DataKeySettings, RetentionPolicySettings):
    service_name: str = Field(default="ingest", description="Name of this service in its logs, traces and tokens.")
    grpc_port: int = Field(default=50051, ge=1, le=65535, description="Port of the ingest service's gRPC server.")
    tls_require_client_cert: bool = Field(
        default=True, description="Camera gateways connect with mutual TLS: their client certificate names their "
                                  "site (docs/security.md); required on every connection to ingest.")
    default_camera_site: str = Field(
        default="", description="Site given to a camera registered without one (the local stack: dev-site, its "
                                "simulator's); empty, as in production: UpsertCamera requires the site.")
    triton_url: str = Field(default="127.0.0.1:8001", description="Triton's gRPC endpoint (host:port).")
    triton_tls: bool = Field(
        default=True, description="Call Triton's gRPC endpoint over TLS, verified against SIGHTLINE_TLS_CA_FILE "
                                  "(frames cross that hop); false only for a Triton serving plain text.")
    triton_model: str = Field(default="alpr", description="Triton model that runs the per-frame pipeline.")
    triton_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Deadline, in seconds, of one frame's call to Triton.")
    max_frame_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024,
        description="Frames whose JPEG is larger than this many bytes are refused.")
    max_frame_pixels: int = Field(
        default=4096 * 3072, ge=64 * 64, description="Frames of more than this many pixels are refused.")
    max_clock_skew_s: float = Field(
        default=300.0, ge=0,
        description="Capture times more than this many seconds in the future (camera clock skew) are refused.")
    read_retention_days: int = Field(
        default=30, ge=1, le=3650,
        description="Days a read is kept after capture when its agency has set nothing (never above its state's "
                    "cap; an evidence hold keeps it longer).")
    record_cache_s: float = Field(
        default=10.0, ge=0, le=600,
        description="Seconds a camera's or an agency's record (with its retention setting) is cached.")
    record_cache_size: int = Field(default=10_000, ge=1, le=1_000_000,
                                   description="Most camera and agency records held in that cache (registered "
                                               "cameras only: unknown ids are never cached).")
    counter_ttl_days: int = Field(
        default=40, ge=1, le=3650,
        description="Days the per-agency daily counters of the transparency portal (reads, unique vehicles) live "
                    "in Redis after their last update (at least the agency's retention plus 10 days).")
    audit_address: str = Field(
        default="127.0.0.1:50054",
        description="Audit service (host:port); camera registry changes and refusals are recorded there.")
    audit_timeout_s: float = Field(
        default=3.0, gt=0, le=30, description="Deadline, in seconds, of one call to the audit service.")
    stream_concurrency: int = Field(
        default=4, ge=1, le=64,
        description="Frames processed at once per gateway stream; acknowledgements still go out in order.")
    outbox_sweep_interval_s: float = Field(
        default=5.0, gt=0,
        description="Seconds between runs of the outbox sweeper, which re-publishes stored frames whose reads never "
                    "reached the read stream.")
    outbox_min_age_s: float = Field(
        default=10.0, ge=0,
        description="The sweeper re-publishes a frame only once it has been stored this many seconds unpublished.")
