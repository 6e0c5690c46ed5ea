"""Settings shared by every service, read from the environment (prefix SIGHTLINE_).

Each service extends `ServiceSettings` with its own fields and default port. Bad values fail at start-up
with pydantic's message naming the variable, never later in a request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.retention_policy import CapTable
from services.common.tls import TlsSettings


class ServiceSettings(TlsSettings):
    """Every gRPC server's settings, TLS included (services/common/tls.py)."""

    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True)

    service_name: str = "sightline"
    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=1, le=65535)
    # Plain-text port serving the standard health service only (grpc.health.v1: SERVING or NOT_SERVING, nothing
    # else), for the kubelet's gRPC probes, which speak no TLS; 0: none (the local stack).
    health_port: int = Field(default=0, ge=0, le=65535)
    # 0 disables the Prometheus endpoint (tests run many services on one host).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # SIGTERM: seconds to keep answering in-flight calls after health turns NOT_SERVING.
    drain_seconds: float = Field(default=2.0, ge=0, le=60)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0, le=300)
    # How often the health service re-checks its dependencies.
    health_interval_seconds: float = Field(default=2.0, gt=0, le=60)
    # Largest gRPC message accepted (frames carry JPEGs).
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)


class MongoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True)

    mongo_uri: str = "mongodb://127.0.0.1:27017/?replicaSet=rs0"
    mongo_db: str = "sightline"
    mongo_timeout_ms: int = Field(default=5000, ge=100)


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Stream on which every stored read is published (consumed by the hotlist matcher).
    read_stream: str = "sightline:reads:v1"
    read_stream_maxlen: int = Field(default=1_000_000, ge=1000)


class RetentionPolicySettings(BaseSettings):
    """The state caps (ingest and the retention service must agree on them)."""

    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True)

    default_cap_days: int = Field(default=30, ge=1, le=3650,
                                  description="Cap for states with no statute on file (docs/retention.md).")
    state_caps: dict[str, int] = Field(
        default_factory=dict,
        description="Caps that override or extend the statutory table, as JSON: SIGHTLINE_STATE_CAPS='{\"CA\": 60}'.")

    def cap_table(self) -> CapTable:
        return CapTable(self.default_cap_days, {k.upper(): v for k, v in self.state_caps.items()})
