from __future__ import annotations

from pydantic import Field

from services.common.settings import MongoSettings, RedisSettings, RetentionPolicySettings, ServiceSettings
from services.common.web import HttpSettings


class PortalSettings(ServiceSettings, HttpSettings, MongoSettings, RedisSettings, RetentionPolicySettings):
    """The public transparency portal. In Kubernetes its MongoDB user has the `read` role only."""

    service_name: str = "portal"
    http_port: int = Field(default=8080, ge=1, le=65535)
    # The audit trail's database (searches are counted there, read-only).
    audit_mongo_db: str = "sightline_audit"
    # Days covered by the figures and plots.
    window_days: int = Field(default=30, ge=1, le=366)
    # Retention of an agency that has set none (ingest's default); capped by the agency's state as ingest does.
    read_retention_days: int = Field(default=30, ge=1, le=3650)
    # A page's figures are recomputed at most this often (0: on every request).
    cache_seconds: float = Field(default=60.0, ge=0, le=3600)
