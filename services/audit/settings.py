from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.auth import KeySettings
from services.common.settings import MongoSettings, RedisSettings, ServiceSettings

AUDIT_KEY = "audit_ed25519"


class AuditSettings(ServiceSettings, MongoSettings, RedisSettings, KeySettings):
    """Redis: the token revocation entries written by identity (read only)."""

    service_name: str = Field(default="audit", description="Name of this service in its logs, traces and tokens.")
    grpc_port: int = Field(default=50054, ge=1, le=65535, description="Port of the audit service's gRPC server.")
    audit_mongo_db: str = Field(
        default="sightline_audit",
        description="Database of the audit trail, never the reads' (own access rights, own retention).")
    audit_retention_days: int = Field(
        default=400, ge=365, le=36500,
        description="Days an audit entry is kept: at least a year, independent of the reads' retention.")
    audit_signing_key_file: Path | None = Field(
        default=None,
        description="PEM Ed25519 private key that signs the checkpoints of the chain head; unset with dev keys: "
                    "<data_dir>/keys/audit_ed25519.pem.")
    audit_public_key_file: Path | None = Field(
        default=None,
        description="PEM Ed25519 public key with which `sightline audit verify` checks the checkpoints; unset with "
                    "dev keys: <data_dir>/keys/audit_ed25519.pub.pem.")
    checkpoint_interval_s: float = Field(
        default=60.0, gt=0,
        description="Seconds between signed checkpoints of the chain head (written only when the head moved).")
    max_event_bytes: int = Field(default=16 * 1024, ge=1024, description=(
        "Largest event accepted from a service, as canonical JSON bytes (INVALID_ARGUMENT above it)"))
    append_services: list[str] = Field(
        default=["ingest", "search", "hotlist", "retention", "identity"], min_length=1, description=(
            "Services whose service tokens may call Append (JSON list); each one's public key is "
            "service_<name>_ed25519.pub.pem in SIGHTLINE_SERVICE_PUBLIC_KEYS_DIR (dev: <data_dir>/keys)"))
    append_rate_per_s: float = Field(default=500.0, gt=0, description=(
        "Sustained Append calls per second allowed to each calling service (RESOURCE_EXHAUSTED above it)"))
    append_burst: int = Field(default=1000, ge=1, description="Append calls a service may make at once above its rate")
    flag_volume_threshold: int = Field(
        default=200, ge=1,
        description="Review flags (services/audit/domain/review.py): a user with at least this many searches in the "
                    "reviewed period (default the last day) is flagged for unusual volume.")
    flag_volume_factor: float = Field(
        default=5.0, gt=1,
        description="Review flags: a user with more than this many times the agency's median searches in the period "
                    "(given 3 or more users) is flagged for unusual volume.")
    flag_plate_min_users: int = Field(
        default=5, ge=2,
        description="Review flags: a plate searched by at least this many different users in the period is flagged.")
