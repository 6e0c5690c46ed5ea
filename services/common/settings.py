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

    service_name: str = Field(
        default="sightline",
        description="Name of the service in its logs and traces (OTEL_SERVICE_NAME overrides it for traces) and in "
                    "the service tokens it signs (key service_<name>_ed25519); each service sets its own.")
    grpc_host: str = Field(
        default="0.0.0.0", description="Address the gRPC server binds to (0.0.0.0: every interface).")
    grpc_port: int = Field(default=50051, ge=1, le=65535, description="Port of the gRPC server.")
    health_port: int = Field(
        default=0, ge=0, le=65535,
        description="Plain-text port serving the standard health service only (grpc.health.v1: SERVING or "
                    "NOT_SERVING, nothing else), for the kubelet's gRPC probes, which speak no TLS; 0: none.")
    metrics_port: int = Field(
        default=0, ge=0, le=65535,
        description="Port of the Prometheus /metrics endpoint; 0 disables it (tests run many services on one host).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level of the log records written (DEBUG, INFO, WARNING or ERROR).")
    drain_seconds: float = Field(
        default=2.0, ge=0, le=60,
        description="On SIGTERM, seconds the server keeps accepting calls after health turns NOT_SERVING, so load "
                    "balancers stop sending before it stops.")
    shutdown_grace_seconds: float = Field(
        default=20.0, ge=0, le=300,
        description="After draining, seconds in-flight calls (HTTP requests for web front ends) get to finish "
                    "before they are cancelled.")
    health_interval_seconds: float = Field(
        default=2.0, gt=0, le=60, description="Seconds between the health service's checks of its dependencies.")
    max_message_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024,
        description="Largest gRPC message the server sends or accepts, in bytes (frames carry JPEGs).")


class MongoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True)

    mongo_uri: str = Field(
        default="mongodb://127.0.0.1:27017/?replicaSet=rs0",
        description="MongoDB connection string (a replica set: ingest and audit use transactions).")
    mongo_db: str = Field(
        default="sightline", description="The services' database (the audit trail has its own, audit_mongo_db).")
    mongo_timeout_ms: int = Field(
        default=5000, ge=100,
        description="Milliseconds to wait for a MongoDB server to be found or connected before an operation fails.")


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True)

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis connection URL.")
    read_stream: str = Field(
        default="sightline:reads:v1",
        description="Redis stream on which ingest publishes every stored read (consumed by the tracker).")
    read_stream_maxlen: int = Field(
        default=1_000_000, ge=1000,
        description="Approximate number of entries the read stream is trimmed to as ingest publishes.")


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
