"""The whole local stack as one object: real mongod, Redis, Triton and the Sightline services.

Tests start it (or parts of it) on free ports in a temporary folder; `python -m services.devstack up`
starts it on the standard ports under `.local/`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from services.cli.storage import MONGO_PRIVILEGES
from services.common.tls import TlsSettings, secure_channel
from services.devstack.credentials import StorageCredentials
from services.devstack.pki import DEV_SITE, DevPki
from services.devstack.servers import (
    Proc,
    ServerTls,
    free_port,
    port_open,
    spawn,
    start_mongo,
    start_redis,
    start_service,
    stop_all,
)
from services.inference.launcher import REPO_ROOT, wait_ready

SERVICES = {"audit": "services.audit", "identity": "services.identity", "ingest": "services.ingest",
            "search": "services.search", "hotlist": "services.hotlist",
            "tracker": "services.tracker", "retention": "services.retention"}
# The HTTP front ends: the public transparency portal and the staff console (which calls these services).
WEB = {"portal": "services.portal", "console": "services.console"}
CONSOLE_BACKENDS = ("identity", "search", "hotlist", "audit", "retention", "ingest")
# Every server of the stack gets its own certificate from the development CA.
TLS_SERVERS = (*SERVICES, *WEB, "mongod", "redis", "triton")


# What the services use: stopped after them, so that each can drain.
SERVERS = frozenset({"mongod", "redis", "triton"})


@dataclass
class Ports:
    mongo: int = 27017
    redis: int = 6379
    triton_http: int = 8000
    triton_grpc: int = 8001
    triton_metrics: int = 8002
    ingest: int = 50051
    search: int = 50052
    hotlist: int = 50053
    audit: int = 50054
    identity: int = 50055
    retention: int = 50056
    tracker: int = 50057
    portal: int = 8080
    console: int = 8081

    @classmethod
    def free(cls) -> Ports:
        return cls(**{name: free_port() for name in cls.__dataclass_fields__})


@dataclass
class LocalStack:
    root: Path
    ports: Ports = field(default_factory=Ports)
    procs: dict[str, Proc] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    # False: every hop in clear text (the TLS benchmark's baseline only).
    tls: bool = True

    def __post_init__(self) -> None:
        # Every service of this stack shares its dev keys (signing and verifying tokens, data keys) and audits
        # to its audit service; tools signing dev tokens use the same folder (`data_dir`).
        self.env.setdefault("SIGHTLINE_DATA_DIR", str(self.data_dir))
        self.env.setdefault("SIGHTLINE_AUDIT_ADDRESS", self.address("audit"))
        # The console forwards the browser's address to identity (failed-login throttling by source) from here.
        self.env.setdefault("SIGHTLINE_LOGIN_TRUSTED_PROXIES", '["127.0.0.1/32", "::1/128"]')

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def pki(self) -> DevPki:
        """The development CA and certificates: `<data_dir>/tls`, or SIGHTLINE_DEV_PKI_DIR (the test session
        shares one CA between its stacks); created once, renewed within 30 days of expiry, on each start."""
        folder = self.env.get("SIGHTLINE_DEV_PKI_DIR") or os.environ.get("SIGHTLINE_DEV_PKI_DIR")
        pki = DevPki(Path(folder) if folder else Path(self.env["SIGHTLINE_DATA_DIR"]) / "tls")
        pki.ensure(TLS_SERVERS)
        return pki

    def tls_env(self, name: str) -> dict[str, str]:
        """Server `name`'s TLS settings: its certificate and key, and the CA it trusts as a client."""
        if not self.tls:
            return {"SIGHTLINE_TLS_ENABLED": "false"}
        pki = self.pki
        pair = pki.server(name)
        env = {"SIGHTLINE_TLS_ENABLED": "true", "SIGHTLINE_TLS_CA_FILE": str(pki.ca),
               "SIGHTLINE_TLS_CERT_FILE": str(pair.cert), "SIGHTLINE_TLS_KEY_FILE": str(pair.key)}
        if name == "ingest":  # camera gateways: mutual TLS, their certificates from the same CA
            env.update(SIGHTLINE_TLS_REQUIRE_CLIENT_CERT="true", SIGHTLINE_TLS_CLIENT_CA_FILE=str(pki.ca),
                       SIGHTLINE_DEFAULT_CAMERA_SITE=DEV_SITE)
        return env

    def client_tls(self, site: str | None = DEV_SITE) -> TlsSettings:
        """A tool's or test's TLS settings: trust the stack's CA, present `site`'s gateway certificate."""
        if not self.tls:
            return TlsSettings(tls_enabled=False)
        pki = self.pki
        if site is None:
            return TlsSettings(tls_enabled=True, tls_ca_file=pki.ca, tls_client_cert_file=None,
                               tls_client_key_file=None)
        gateway = pki.gateway(site) if site == DEV_SITE else pki.ensure((), (site,)).gateway(site)
        return TlsSettings(tls_enabled=True, tls_ca_file=pki.ca, tls_client_cert_file=gateway.cert,
                           tls_client_key_file=gateway.key)

    def client_env(self, site: str = DEV_SITE) -> dict[str, str]:
        """The same as environment variables, for a tool run as a subprocess (simulator, CLI)."""
        tls = self.client_tls(site)
        if not tls.tls_enabled:
            return {"SIGHTLINE_TLS_ENABLED": "false"}
        return {"SIGHTLINE_TLS_ENABLED": "true", "SIGHTLINE_TLS_CA_FILE": str(tls.tls_ca_file),
                "SIGHTLINE_TLS_CLIENT_CERT_FILE":
                str(tls.tls_client_cert_file), "SIGHTLINE_TLS_CLIENT_KEY_FILE": str(tls.tls_client_key_file)}

    def channel(self, name: str, options: Sequence[tuple[str, Any]] = (), site: str | None = DEV_SITE
                ) -> Any:
        """A TLS channel to service `name` (or to a host:port), trusting the stack's CA."""
        target = name if ":" in name else self.address(name)
        return secure_channel(target, self.client_tls(site), options)

    @property
    def credentials(self) -> StorageCredentials:
        """The MongoDB and Redis credentials kept in the stack's data dir (SIGHTLINE_DATA_DIR)."""
        return StorageCredentials.ensure(Path(self.env["SIGHTLINE_DATA_DIR"]))

    def server_tls(self, name: str) -> ServerTls | None:
        if not self.tls:
            return None
        pki = self.pki
        pair = pki.server(name)
        return ServerTls(pair.cert, pair.key, pki.ca)

    @property
    def storage_ca(self) -> Path | None:
        """The CA that MongoDB and Redis clients verify the servers against (None: TLS off)."""
        return self.pki.ca if self.tls else None

    def start_mongo(self) -> None:
        """mongod (TLS only); `env` then holds the administrator's URI, for tools and test fixtures (not
        services)."""
        self.procs["mongod"] = start_mongo(self.root / "mongo", self.ports.mongo, self.logs, self.credentials,
                                           tls=self.server_tls("mongod"))
        self.env["SIGHTLINE_MONGO_URI"] = self.credentials.mongo_uri(self.ports.mongo, ca=self.storage_ca)

    def start_redis(self) -> None:
        """redis-server (TLS only); `env` then holds the administrator's URL, for tools and test fixtures (not
        services)."""
        self.procs["redis"] = start_redis(self.root / "redis", self.ports.redis, self.logs, self.credentials,
                                          tls=self.server_tls("redis"))
        self.env["SIGHTLINE_REDIS_URL"] = self.credentials.redis_url(self.ports.redis, ca=self.storage_ca)

    def storage_env(self, name: str) -> dict[str, str]:
        """The stack's settings for service `name`, with its own MongoDB and Redis users in place of the
        administrator's (a service without a MongoDB user gets no MongoDB URI). The servers are those `env`
        names (a stack may borrow another's, with its data dir), else the stack's own ports."""
        env = {k: v for k, v in self.env.items() if k not in ("SIGHTLINE_MONGO_URI", "SIGHTLINE_REDIS_URL")}
        mongo_port = urlsplit(self.env["SIGHTLINE_MONGO_URI"]).port if "SIGHTLINE_MONGO_URI" in self.env \
            else self.ports.mongo
        redis_port = urlsplit(self.env["SIGHTLINE_REDIS_URL"]).port if "SIGHTLINE_REDIS_URL" in self.env \
            else self.ports.redis
        if name in MONGO_PRIVILEGES:
            env["SIGHTLINE_MONGO_URI"] = self.credentials.mongo_uri(mongo_port, name, ca=self.storage_ca)
        env["SIGHTLINE_REDIS_URL"] = self.credentials.redis_url(redis_port, name, ca=self.storage_ca)
        return env

    def start_triton(self, timeout: float = 600) -> None:
        venv = Path(os.environ.get("SIGHTLINE_TRITON_VENV", REPO_ROOT / ".venv-triton"))
        env = {"SIGHTLINE_TRITON_VENV": str(venv), "SIGHTLINE_TRITON_HTTP_PORT": str(self.ports.triton_http),
               "SIGHTLINE_TRITON_GRPC_PORT": str(self.ports.triton_grpc),
               "SIGHTLINE_TRITON_METRICS_PORT": str(self.ports.triton_metrics)}
        tls = self.server_tls("triton")
        if tls is not None:  # ingest → Triton carries frames: its gRPC endpoint serves TLS only
            env.update(SIGHTLINE_TRITON_GRPC_TLS_CERT_FILE=str(tls.cert),
                       SIGHTLINE_TRITON_GRPC_TLS_KEY_FILE=str(tls.key))
        proc = spawn("triton", [sys.executable, "-m", "services.inference.launcher"], self.logs, env)
        self.procs["triton"] = proc
        url = f"127.0.0.1:{self.ports.triton_grpc}"
        try:
            asyncio.run(wait_ready(url, timeout, ("alpr",), tls.ca if tls else None))
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{proc.tail()}") from exc
        self.env["SIGHTLINE_TRITON_URL"] = url
        self.env["SIGHTLINE_TRITON_TLS"] = "true" if tls else "false"

    def service_env(self, name: str, **extra_env: str) -> dict[str, str]:
        """The environment service `name` runs with (tools acting with its settings use it too)."""
        port = getattr(self.ports, name)
        return {**self.storage_env(name), **self.tls_env(name), "SIGHTLINE_GRPC_PORT": str(port),
                "SIGHTLINE_GRPC_HOST": "127.0.0.1", **extra_env}

    def start_service(self, name: str, **extra_env: str) -> Proc:
        port = getattr(self.ports, name)
        proc = start_service(SERVICES[name], self.service_env(name, **extra_env), self.logs, port)
        self.procs[name] = proc
        return proc

    def start_web(self, name: str, **extra_env: str) -> Proc:
        """The portal or the console, waited for until its HTTP port accepts."""
        port = getattr(self.ports, name)
        backends = {f"SIGHTLINE_{svc.upper()}_ADDRESS": self.address(svc) for svc in CONSOLE_BACKENDS}
        env = {**self.storage_env(name), **self.tls_env(name), **backends, "SIGHTLINE_HTTP_PORT": str(port),
               "SIGHTLINE_HTTP_HOST": "127.0.0.1", **extra_env}
        proc = start_service(WEB[name], env, self.logs, port)
        self.procs[name] = proc
        return proc

    def restart(self, name: str, kill: bool = False) -> None:
        proc = self.procs[name]
        proc.kill() if kill else proc.stop()
        if name in SERVICES:
            self.start_service(name)
        elif name in WEB:
            self.start_web(name)
        elif name == "mongod":
            self.start_mongo()
        elif name == "redis":
            self.start_redis()
        elif name == "triton":
            self.start_triton()

    def address(self, name: str) -> str:
        return f"127.0.0.1:{getattr(self.ports, name)}"

    def url(self, name: str) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address(name)}"

    def stop(self) -> None:
        """The services and front ends together (each drains), then the servers they were using."""
        stop_all(proc for name, proc in self.procs.items() if name not in SERVERS)
        stop_all(proc for name, proc in self.procs.items() if name in SERVERS)
        self.procs.clear()

    def ports_in_use(self) -> list[int]:
        return [p for p in vars(self.ports).values() if port_open(p)]
