from __future__ import annotations

from pydantic import Field

from services.common.data_keys import DataKeySettings
from services.common.settings import MongoSettings, RedisSettings, RetentionPolicySettings, ServiceSettings


class RetentionSettings(ServiceSettings, MongoSettings, RedisSettings, DataKeySettings, RetentionPolicySettings):
    service_name: str = "retention"
    grpc_port: int = Field(default=50056, ge=1, le=65535)
    # Days a read is kept when its agency has set nothing (ingest's SIGHTLINE_READ_RETENTION_DAYS).
    read_retention_days: int = Field(default=30, ge=1, le=3650)
    # How often the verification job runs (shreds ended days and writes their reports).
    verify_interval_s: float = Field(default=3600.0, gt=0)
    # Reads one hold may cover.
    max_hold_reads: int = Field(default=100_000, ge=1)
    # Documents re-sealed per batch when placing or releasing a hold.
    hold_batch_size: int = Field(default=500, ge=1, le=10_000)
    audit_address: str = "127.0.0.1:50054"
    audit_timeout_s: float = Field(default=3.0, gt=0, le=30)
