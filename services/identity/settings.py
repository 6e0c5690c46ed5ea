from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from pydantic import Field, model_validator

from services.common.data_keys import DataKeySettings
from services.common.settings import MongoSettings, RedisSettings, ServiceSettings


class IdentitySettings(ServiceSettings, MongoSettings, RedisSettings, DataKeySettings):
    """Redis: failed-login throttles and token revocations (identity is the only writer of both). The data
    master key seals users' TOTP secrets."""

    service_name: str = Field(default="identity", description="Name of this service in its logs, traces and tokens.")
    grpc_port: int = Field(default=50055, ge=1, le=65535, description="Port of the identity service's gRPC server.")
    token_signing_key_file: Path | None = Field(
        default=None,
        description="PEM Ed25519 private key that signs access tokens (only this service holds it); unset with dev "
                    "keys: <data_dir>/keys/token_ed25519.pem.")
    token_signing_keys_dir: Path | None = Field(default=None, description=(
        "Folder of signing keys (*.pem): identity signs with the newest, the last by name (name them by date, "
        "2026-12-04.pem); verifiers must already hold its public key (SIGHTLINE_TOKEN_PUBLIC_KEYS_DIR)."))
    token_ttl_minutes: int = Field(
        default=15, ge=1, le=60,
        description="Minutes an access token is valid: short-lived, so users log in again after this long.")
    login_account_free_failures: int = Field(
        default=5, ge=1, le=50,
        description="Failed logins on one username (known or not) before each further attempt must wait.")
    login_account_backoff_max_s: float = Field(
        default=300, ge=1, le=3600,
        description="Longest wait imposed on a username: after it, the right password and code get in again.")
    login_source_free_failures: int = Field(
        default=20, ge=1, le=1000,
        description="Failed logins from one source address (any usernames) before each further attempt must wait.")
    login_source_backoff_max_s: float = Field(
        default=900, ge=1, le=3600, description="Longest wait imposed on a source address.")
    login_backoff_base_s: float = Field(
        default=1.0, gt=0, le=60, description="First wait past the free failures; it doubles with each failure.")
    login_throttle_window_s: int = Field(
        default=3600, ge=60, le=86400,
        description="Failure counts are forgotten this long after the last attempt (at least the longest wait).")
    login_trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description="Peers (the console) whose 'x-forwarded-for' metadata names the source address of a login; "
                    "from any other peer the header is ignored. JSON list of addresses or networks.")
    min_password_length: int = Field(
        default=12, ge=8, le=128, description="Fewest characters a new password may have.")
    argon2_time_cost: int = Field(
        default=3, ge=1, le=10,
        description="Iterations of argon2id, the memory-hard password hash (a stored hash made with other costs is "
                    "redone at the user's next login).")
    argon2_memory_kib: int = Field(
        default=64 * 1024, ge=8 * 1024, description="Memory, in KiB, that argon2id uses to hash one password.")
    argon2_parallelism: int = Field(
        default=2, ge=1, le=16, description="Parallel lanes (threads) of argon2id when hashing one password.")
    audit_address: str = Field(
        default="127.0.0.1:50054",
        description="Audit service (host:port); logins and account changes are recorded there before answering.")
    audit_timeout_s: float = Field(
        default=3.0, gt=0, le=30, description="Deadline, in seconds, of one call to the audit service.")

    @model_validator(mode="after")
    def _window_outlasts_waits(self) -> IdentitySettings:
        if self.login_throttle_window_s < max(self.login_account_backoff_max_s, self.login_source_backoff_max_s):
            raise ValueError("login_throttle_window_s must be at least the longest login backoff")
        return self
