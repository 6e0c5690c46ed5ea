from __future__ import annotations

from pydantic import Field

from services.common.auth import KeySettings
from services.common.settings import MongoSettings, RedisSettings, ServiceSettings


class SearchSettings(ServiceSettings, MongoSettings, RedisSettings, KeySettings):
    """Redis: the token revocation entries written by identity (read only)."""

    service_name: str = "search"
    grpc_port: int = Field(default=50052, ge=1, le=65535)
    default_page_size: int = Field(default=50, ge=1, le=500)
    max_page_size: int = Field(default=500, ge=1, le=5000)
    # Server-side limit on one query's MongoDB time.
    query_timeout_ms: int = Field(default=5000, ge=100)
    # The audit service: every search is recorded there before it answers (fail closed).
    audit_address: str = "127.0.0.1:50054"
    audit_timeout_s: float = Field(default=3.0, gt=0, le=30)
