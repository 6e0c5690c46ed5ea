from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.auth import KeySettings
from services.common.settings import MongoSettings, RedisSettings, ServiceSettings

AUDIT_KEY = "audit_ed25519"


class AuditSettings(ServiceSettings, MongoSettings, RedisSettings, KeySettings):
    """Redis: the token revocation entries written by identity (read only)."""

    service_name: str = "audit"
    grpc_port: int = Field(default=50054, ge=1, le=65535)
    # The audit trail lives in its own database (own access rights, own retention), never with the reads.
    audit_mongo_db: str = "sightline_audit"
    # Days an audit entry is kept: at least a year, independent of the reads' retention.
    audit_retention_days: int = Field(default=400, ge=365, le=36500)
    # Ed25519 key that signs checkpoints (PEM); the public half verifies them (`sightline audit verify`).
    audit_signing_key_file: Path | None = None
    audit_public_key_file: Path | None = None
    # Seconds between signed checkpoints of the chain head (only when the head moved).
    checkpoint_interval_s: float = Field(default=60.0, gt=0)
    max_event_bytes: int = Field(default=16 * 1024, ge=1024, description=(
        "Largest event accepted from a service, as canonical JSON bytes (INVALID_ARGUMENT above it)"))
    append_services: list[str] = Field(
        default=["ingest", "search", "hotlist", "retention", "identity"], min_length=1, description=(
            "Services whose service tokens may call Append (JSON list); each one's public key is "
            "service_<name>_ed25519.pub.pem in SIGHTLINE_SERVICE_PUBLIC_KEYS_DIR (dev: <data_dir>/keys)"))
    append_rate_per_s: float = Field(default=500.0, gt=0, description=(
        "Sustained Append calls per second allowed to each calling service (RESOURCE_EXHAUSTED above it)"))
    append_burst: int = Field(default=1000, ge=1, description="Append calls a service may make at once above its rate")
    # Automatic flags (see services/audit/domain/review.py).
    flag_volume_threshold: int = Field(default=200, ge=1)
    flag_volume_factor: float = Field(default=5.0, gt=1)
    flag_plate_min_users: int = Field(default=5, ge=2)
