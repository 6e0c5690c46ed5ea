"""TLS for every gRPC hop: server credentials that reload a renewed certificate, and client channels that
verify the server against a configured CA.

Servers (`server_credentials`, used once, by the shared bootstrap in grpc_server.py) serve TLS only, with the
certificate and key named by `SIGHTLINE_TLS_CERT_FILE` / `SIGHTLINE_TLS_KEY_FILE`. The files are re-read
when they change (grpc's dynamic certificate configuration: each new handshake asks the fetcher, which
looks at the files' modification times at most once a second), so cert-manager or an operator can replace
them under a running server: open connections keep their session, new ones get the new certificate. A
server with `SIGHTLINE_TLS_REQUIRE_CLIENT_CERT` (ingest, for camera gateways) also requires a client
certificate signed by `SIGHTLINE_TLS_CLIENT_CA_FILE` (default: the CA file).

A plain-text client is refused during the handshake: nothing of its call is read. grpc's core logs each
such refusal on the server's standard error ("Handshake failed ... WRONG_VERSION_NUMBER" for plain text,
"CERTIFICATE_VERIFY_FAILED" for an untrusted or expired client certificate).

Clients (`secure_channel(target, settings)`) trust only the CA in `SIGHTLINE_TLS_CA_FILE` (with dev keys
and no file named: the local stack's `<data_dir>/tls/ca.crt`, as tools find the stack's dev keys) and
present `SIGHTLINE_TLS_CLIENT_CERT_FILE` / `..._KEY_FILE` when set. `SIGHTLINE_TLS_ENABLED=false` turns TLS
off on both sides (the benchmark's clear-text baseline); the server then logs a warning at start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

# Local state of the dev stack (same default as auth.LOCAL_DATA_DIR; kept here so that tls imports nothing).
LOCAL_DATA_DIR = Path(__file__).resolve().parents[2] / ".local" / "data"
# A camera gateway's client certificate names its site in its subject's common name: "site:<site_id>".
SITE_PREFIX = "site:"


class TlsError(Exception):
    """TLS is on but its files are missing or unreadable."""


class TlsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_", extra="ignore", frozen=True)

    tls_enabled: bool = Field(default=True, description="Serve and call gRPC over TLS. Off only for a "
                              "clear-text benchmark baseline.")
    tls_cert_file: Path | None = Field(default=None, description="Server certificate chain (PEM); re-read "
                                       "when it changes.")
    tls_key_file: Path | None = Field(default=None, description="Server private key (PEM).")
    tls_ca_file: Path | None = Field(default=None, description="CA that clients verify servers against; "
                                     "unset with dev keys: <data_dir>/tls/ca.crt of the local stack.")
    tls_client_ca_file: Path | None = Field(default=None, description="CA that signs client certificates a "
                                            "server requires (ingest: camera gateways); default the CA file.")
    tls_require_client_cert: bool = Field(default=False, description="Require a verified client "
                                          "certificate (mutual TLS) on every connection.")
    tls_client_cert_file: Path | None = Field(default=None, description="Client certificate this process "
                                              "presents (a camera gateway's, naming its site).")
    tls_client_key_file: Path | None = Field(default=None, description="Private key of the client certificate "
                                             "(PEM).")
    tls_server_name: str | None = Field(default=None, description="Name to verify in the server's "
                                        "certificate instead of the target's host.")
    data_dir: Path = Field(default=LOCAL_DATA_DIR, description="Local state of the dev stack: with dev keys and "
                           "no CA file named, clients trust <data_dir>/tls/ca.crt.")
    dev_keys: bool = Field(default=True, description="Local stack: trust the dev CA under <data_dir>/tls when no "
                           "CA file is named; off in production, where the CA file is then required.")

    def ca_path(self) -> Path:
        if self.tls_ca_file is not None:
            return self.tls_ca_file
        if self.dev_keys:
            return self.data_dir / "tls" / "ca.crt"
        raise TlsError("SIGHTLINE_TLS_CA_FILE is required (TLS is on and dev keys are off)")


def _read(path: Path | None, what: str) -> bytes:
    if path is None:
        raise TlsError(f"{what} is not set")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"{what} {path}: {exc.strerror}") from exc


class CertificateReloader:
    """grpc's certificate-configuration fetcher: a new configuration whenever the files changed."""

    def __init__(self, settings: TlsSettings, check_every_s: float = 1.0):
        self._cert, self._key = settings.tls_cert_file, settings.tls_key_file
        self._client_ca = settings.tls_client_ca_file or settings.tls_ca_file
        self._require = settings.tls_require_client_cert
        self._every = check_every_s
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp = self._mtimes()
        self.loads = 0

    def _mtimes(self) -> tuple[int, ...]:
        paths = [p for p in (self._cert, self._key, self._client_ca) if p is not None]
        return tuple(os.stat(p).st_mtime_ns for p in paths)

    def config(self) -> Any:
        chain = _read(self._cert, "SIGHTLINE_TLS_CERT_FILE")
        key = _read(self._key, "SIGHTLINE_TLS_KEY_FILE")
        roots = _read(self._client_ca, "SIGHTLINE_TLS_CLIENT_CA_FILE") if self._require else None
        self.loads += 1
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

    def __call__(self) -> Any:
        """Called by grpc on each new handshake: None keeps the current configuration."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self._every:
                return None
            self._checked = now
            try:
                stamp = self._mtimes()
                if stamp == self._stamp:
                    return None
                config = self.config()
            except (OSError, TlsError) as exc:  # half-written or missing: keep serving the current one
                log.warning("TLS certificate not reloaded; serving the previous one", extra={"error": str(exc)})
                return None
            self._stamp = stamp
        log.info("TLS certificate reloaded", extra={"cert_file": str(self._cert)})
        return config


def server_credentials(settings: TlsSettings) -> grpc.ServerCredentials | None:
    """The server's TLS credentials (None: TLS turned off). Raises TlsError when a file is missing."""
    if not settings.tls_enabled:
        return None
    reloader = CertificateReloader(settings)
    initial = reloader.config()
    return grpc.dynamic_ssl_server_credentials(initial, reloader,
                                               require_client_authentication=settings.tls_require_client_cert)


def client_pair(settings: TlsSettings) -> tuple[Path, Path] | None:
    """The certificate a client presents when a server asks for one (ingest does): the client certificate
    named, else the process's own server certificate (a service calling another: its certificate carries
    client auth too), else, with dev keys, the local stack's tools certificate; None: none."""
    if settings.tls_client_cert_file is not None:
        if settings.tls_client_key_file is None:
            raise TlsError("SIGHTLINE_TLS_CLIENT_KEY_FILE is not set")
        return settings.tls_client_cert_file, settings.tls_client_key_file
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        return settings.tls_cert_file, settings.tls_key_file
    if settings.dev_keys and (tools := settings.data_dir / "tls" / "tools.crt").exists():
        return tools, tools.with_suffix(".key")
    return None


def channel_credentials(settings: TlsSettings) -> grpc.ChannelCredentials:
    key = chain = None
    if (pair := client_pair(settings)) is not None:
        chain = _read(pair[0], "SIGHTLINE_TLS_CLIENT_CERT_FILE")
        key = _read(pair[1], "SIGHTLINE_TLS_CLIENT_KEY_FILE")
    return grpc.ssl_channel_credentials(root_certificates=_read(settings.ca_path(), "SIGHTLINE_TLS_CA_FILE"),
                                        private_key=key, certificate_chain=chain)


def secure_channel(target: str, settings: TlsSettings | None = None,
                   options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A grpc.aio channel to `target` that verifies the server against the configured CA (and presents the
    configured client certificate). Settings default to the environment's."""
    settings = settings if settings is not None else TlsSettings()
    opts = list(options)
    if not settings.tls_enabled:
        return grpc.aio.insecure_channel(target, options=opts)
    if settings.tls_server_name:
        opts.append(("grpc.ssl_target_name_override", settings.tls_server_name))
    return grpc.aio.secure_channel(target, channel_credentials(settings), options=opts)


def peer_site(context: grpc.aio.ServicerContext) -> str | None:
    """The site named by the caller's verified client certificate ("site:<id>" common name), else None."""
    auth = context.auth_context() or {}
    for name in auth.get("x509_common_name", []):
        text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        if text.startswith(SITE_PREFIX) and len(text) > len(SITE_PREFIX):
            return text[len(SITE_PREFIX):]
    return None
