from __future__ import annotations

from pydantic import Field

from services.common.auth import KeySettings
from services.common.settings import MongoSettings, RedisSettings, ServiceSettings


class SearchSettings(ServiceSettings, MongoSettings, RedisSettings, KeySettings):
    """Redis: the token revocation entries written by identity (read only)."""

    service_name: str = Field(default="search", description="Name of this service in its logs, traces and tokens.")
    grpc_port: int = Field(default=50052, ge=1, le=65535, description="Port of the search service's gRPC server.")
    default_page_size: int = Field(
        default=50, ge=1, le=500, description="Reads on one page of results when the request names no page size.")
    max_page_size: int = Field(
        default=500, ge=1, le=5000,
        description="Largest page size a request may ask for; a larger one is refused (INVALID_ARGUMENT).")
    query_timeout_ms: int = Field(
        default=5000, ge=100, description="Milliseconds of MongoDB time one search query may take (server-side).")
    audit_address: str = Field(
        default="127.0.0.1:50054",
        description="Audit service (host:port); every search is recorded there before it answers (fail closed).")
    audit_timeout_s: float = Field(
        default=3.0, gt=0, le=30, description="Deadline, in seconds, of one call to the audit service.")
