from __future__ import annotations

from pydantic import Field, SecretStr

from services.common.auth import KeySettings
from services.common.settings import ServiceSettings
from services.common.web import HttpSettings


class ConsoleSettings(ServiceSettings, HttpSettings, KeySettings):
    """The staff console. It talks to the services over gRPC only, never to a database."""

    service_name: str = "console"
    http_port: int = Field(default=8081, ge=1, le=65535)
    identity_address: str = "127.0.0.1:50055"
    search_address: str = "127.0.0.1:50052"
    hotlist_address: str = "127.0.0.1:50053"
    audit_address: str = "127.0.0.1:50054"
    # Empty: evidence holds are not offered.
    retention_address: str = "127.0.0.1:50056"
    # The camera registry for the agency admin's camera pages. Empty: cameras are not offered.
    ingest_address: str = "127.0.0.1:50051"
    # Deadline of one gRPC call made for a page.
    call_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Key of the CSRF tokens (HMAC). Set the same value on every replica; empty: a random key per process.
    csrf_secret: SecretStr = SecretStr("")
    # Alerts raised this long before the alerts page opened are shown first (replay).
    alert_replay_hours: float = Field(default=12.0, ge=0, le=24 * 7)
