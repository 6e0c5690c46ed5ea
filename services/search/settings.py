from __future__ import annotations

from pydantic import Field

from services.common.settings import MongoSettings, ServiceSettings


class SearchSettings(ServiceSettings, MongoSettings):
    service_name: str = "search"
    grpc_port: int = Field(default=50052, ge=1, le=65535)
    default_page_size: int = Field(default=50, ge=1, le=500)
    max_page_size: int = Field(default=500, ge=1, le=5000)
    # Server-side limit on one query's MongoDB time.
    query_timeout_ms: int = Field(default=5000, ge=100)
