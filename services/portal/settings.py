from __future__ import annotations

from pydantic import Field

from services.common.settings import MongoSettings, RedisSettings, RetentionPolicySettings, ServiceSettings
from services.common.web import HttpSettings


class PortalSettings(ServiceSettings, HttpSettings, MongoSettings, RedisSettings, RetentionPolicySettings):
    """The public transparency portal. In Kubernetes its MongoDB user has the `read` role only."""

    service_name: str = Field(default="portal", description="Name of this service in its logs and traces.")
    http_port: int = Field(default=8080, ge=1, le=65535, description="Port of the portal's HTTP server.")
    audit_mongo_db: str = Field(
        default="sightline_audit",
        description="Database of the audit trail, where the portal counts searches (read-only).")
    window_days: int = Field(
        default=30, ge=1, le=366, description="UTC days, ending today, covered by the portal's figures and plots.")
    read_retention_days: int = Field(
        default=30, ge=1, le=3650,
        description="Retention shown for an agency that has set none (set it as on ingest); capped by the agency's "
                    "state as ingest does.")
    cache_seconds: float = Field(
        default=60.0, ge=0, le=3600,
        description="Seconds an agency's page figures are kept before they are recomputed (0: on every request).")
