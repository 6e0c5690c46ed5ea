from __future__ import annotations

from pydantic import Field

from services.common.data_keys import DataKeySettings
from services.common.settings import MongoSettings, RedisSettings, RetentionPolicySettings, ServiceSettings


class RetentionSettings(ServiceSettings, MongoSettings, RedisSettings, DataKeySettings, RetentionPolicySettings):
    service_name: str = Field(default="retention", description="Name of this service in its logs, traces and tokens.")
    grpc_port: int = Field(default=50056, ge=1, le=65535, description="Port of the retention service's gRPC server.")
    read_retention_days: int = Field(
        default=30, ge=1, le=3650,
        description="Days a read is kept when its agency has set nothing, capped by its state; set it as on ingest "
                    "(SIGHTLINE_READ_RETENTION_DAYS).")
    verify_interval_s: float = Field(
        default=3600.0, gt=0,
        description="Seconds between runs of the verification job, which shreds ended capture days and writes their "
                    "reports.")
    max_hold_reads: int = Field(
        default=100_000, ge=1, description="Most reads one evidence hold may cover; a wider hold is refused.")
    hold_batch_size: int = Field(
        default=500, ge=1, le=10_000,
        description="Documents re-sealed per batch when an evidence hold is placed or released.")
    audit_address: str = Field(
        default="127.0.0.1:50054",
        description="Audit service (host:port); evidence holds and retention changes are recorded there.")
    audit_timeout_s: float = Field(
        default=3.0, gt=0, le=30, description="Deadline, in seconds, of one call to the audit service.")
