from __future__ import annotations

from pydantic import Field, SecretStr

from services.common.auth import KeySettings
from services.common.settings import ServiceSettings
from services.common.web import HttpSettings


class ConsoleSettings(ServiceSettings, HttpSettings, KeySettings):
    """The staff console. It talks to the services over gRPC only, never to a database."""

    service_name: str = Field(default="console", description="Name of this service in its logs and traces.")
    http_port: int = Field(default=8081, ge=1, le=65535, description="Port of the console's HTTP server.")
    identity_address: str = Field(
        default="127.0.0.1:50055", description="Identity service (host:port): logins and account management.")
    search_address: str = Field(default="127.0.0.1:50052", description="Search service (host:port).")
    hotlist_address: str = Field(
        default="127.0.0.1:50053", description="Hotlist service (host:port): hot lists and the alert stream.")
    audit_address: str = Field(default="127.0.0.1:50054", description="Audit service (host:port): the audit review.")
    retention_address: str = Field(
        default="127.0.0.1:50056",
        description="Retention service (host:port): evidence holds and deletion reports; empty: they are not offered.")
    ingest_address: str = Field(
        default="127.0.0.1:50051",
        description="Ingest service (host:port): the camera registry of the admin's camera pages; empty: not offered.")
    call_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Deadline, in seconds, of one gRPC call made for a page.")
    csrf_secret: SecretStr = Field(
        default=SecretStr(""),
        description="HMAC key of the CSRF tokens and view tickets; set the same value on every replica (empty: a "
                    "random key per process).")
    alert_replay_hours: float = Field(
        default=12.0, ge=0, le=24 * 7,
        description="Alerts raised up to this many hours before the alerts page opened are shown first (replay).")
