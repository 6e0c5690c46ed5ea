"""The local stack's MongoDB and Redis credentials: generated once under `<data_dir>/storage/` (mode 0600).

`credentials.json` holds the administrator's password (the test fixtures and tools that seed or inspect
data) and one password per service user (services/cli/storage.py); `mongo.keyfile` is the replica set's
internal authentication key (mongod --keyFile); `users.acl` is Redis's ACL file, rewritten from the matrix on
every start and holding password hashes only.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from services.cli.storage import ADMIN, MONGO_PRIVILEGES, SERVICES, redis_acl_file, user_name


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (0600) through a temporary file, so no reader ever sees half of it."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.rename(path)


@dataclass(frozen=True)
class StorageCredentials:
    folder: Path
    admin_password: str
    passwords: dict[str, str]

    @classmethod
    def ensure(cls, data_dir: Path) -> StorageCredentials:
        """The stack's credentials, created on first use (and completed when a service user is added)."""
        folder = data_dir / "storage"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / "credentials.json"
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            stored = json.loads(path.read_text()) if path.exists() else {"admin": secrets.token_hex(24),
                                                                           "services": {}}
            missing = [s for s in SERVICES if s not in stored["services"]]
            if missing:
                stored["services"].update({s: secrets.token_hex(24) for s in missing})
                _write_private(path, json.dumps(stored, indent=2))
            if not (folder / "mongo.keyfile").exists():
                _write_private(folder / "mongo.keyfile", base64.b64encode(secrets.token_bytes(512)).decode())
        return cls(folder, stored["admin"], stored["services"])

    @property
    def mongo_keyfile(self) -> Path:
        return self.folder / "mongo.keyfile"

    def redis_acl(self) -> Path:
        """The ACL file for redis-server, written afresh from the matrix."""
        path = self.folder / "users.acl"
        _write_private(path, redis_acl_file(self.passwords, self.admin_password))
        return path

    def _user(self, service: str | None) -> str:
        if service is None:
            return f"{ADMIN}:{self.admin_password}"
        return f"{user_name(service)}:{self.passwords[service]}"

    def mongo_uri(self, port: int, service: str | None = None, replset: str = "rs0", ca: Path | None = None) -> str:
        """The service's MongoDB URI (None: the administrator's); over TLS verifying `ca` when given."""
        tls = f"&tls=true&tlsCAFile={quote(str(ca))}" if ca is not None else ""
        return f"mongodb://{self._user(service)}@127.0.0.1:{port}/?replicaSet={replset}&authSource=admin{tls}"

    def redis_url(self, port: int, service: str | None = None, ca: Path | None = None) -> str:
        """The service's Redis URL (None: the administrator's); over TLS (rediss) verifying `ca` when given."""
        if ca is not None:
            return f"rediss://{self._user(service)}@127.0.0.1:{port}/0?ssl_ca_certs={quote(str(ca))}"
        return f"redis://{self._user(service)}@127.0.0.1:{port}/0"

    def mongo_passwords(self) -> dict[str, str]:
        """The passwords of the services that have a MongoDB user."""
        return {s: p for s, p in self.passwords.items() if s in MONGO_PRIVILEGES}
