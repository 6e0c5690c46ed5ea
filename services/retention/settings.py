from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import MongoSettings, RedisSettings, ServiceSettings
from services.retention.domain.policy import CapTable
from services.retention.keys import DataKeySettings


class RetentionPolicySettings(BaseSettings):
    """The state caps (ingest and the retention service must agree on them)."""

    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True)

    # Cap for states with no statute on file (docs/retention.md).
    default_cap_days: int = Field(default=30, ge=1, le=3650)
    # Caps that override or extend the statutory table, as JSON: SIGHTLINE_STATE_CAPS='{"CA": 60}'.
    state_caps: dict[str, int] = Field(default_factory=dict)

    def cap_table(self) -> CapTable:
        return CapTable(self.default_cap_days, {k.upper(): v for k, v in self.state_caps.items()})


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
