from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.auth import KeySettings
from services.common.settings import MongoSettings, ServiceSettings


class IdentitySettings(ServiceSettings, MongoSettings, KeySettings):
    service_name: str = "identity"
    grpc_port: int = Field(default=50055, ge=1, le=65535)
    # PEM Ed25519 private key that signs access tokens (only this service holds it).
    token_signing_key_file: Path | None = None
    # Access tokens are short-lived: log in again after this many minutes.
    token_ttl_minutes: int = Field(default=15, ge=1, le=60)
    # Consecutive failed logins (wrong password, missing or wrong code) before the account locks ...
    max_failed_logins: int = Field(default=5, ge=1, le=20)
    # ... for this long (an agency admin can unlock it sooner).
    lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    min_password_length: int = Field(default=12, ge=8, le=128)
    # argon2id cost: memory-hard password hashing.
    argon2_time_cost: int = Field(default=3, ge=1, le=10)
    argon2_memory_kib: int = Field(default=64 * 1024, ge=8 * 1024)
    argon2_parallelism: int = Field(default=2, ge=1, le=16)
    # The audit service (logins and changes are recorded there before answering).
    audit_address: str = "127.0.0.1:50054"
    audit_timeout_s: float = Field(default=3.0, gt=0, le=30)
