"""A site's gateway configuration: one YAML file, validated when the gateway starts (any bad value fails fast).

Secrets never appear in the file nor on the command line: each camera's ingest credential, a source's
password and the TLS key are read from files named here (mounted Kubernetes Secrets, mode 0600). A source
URL that carries a password (`rtsp://user:pass@...`) is refused; name `username` and `password_file` instead.

    site_id: depot-north
    ingest:
      target: ingest.sightline.svc:50051
      tls: {ca_file: /etc/sightline/ca.pem, cert_file: /etc/sightline/gw.pem, key_file: /etc/sightline/gw.key}
    spool: {path: /var/lib/sightline-gateway/spool.db, max_bytes: 2000000000}
    cameras:
      - camera_id: north-01
        secret_file: /etc/sightline/cameras/north-01
        source: {type: rtsp, url: "rtsp://10.0.0.21/stream1", transport: tcp, username: alpr,
                 password_file: /etc/sightline/rtsp/north-01}
        pick: {zone: [0.1, 0.4, 0.9, 1.0], frames_per_pass: 3, max_frames_per_s: 4}
      - camera_id: ftp-07
        secret_file: /etc/sightline/cameras/ftp-07
        source: {type: folder, path: /srv/ftp/cam07}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(path: Path) -> str:
    """The secret held in `path` (surrounding whitespace removed); ValueError when unreadable or empty."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
    if not text:
        raise ValueError(f"secret file {path} is empty")
    return text


def _existing_file(path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise ValueError(f"{path} is not a readable file")
    return path


def _rtsp_url(url: str) -> str:
    return _url_without_password(url, ("rtsp", "rtsps"))


def _http_url(url: str) -> str:
    return _url_without_password(url, ("http", "https"))


def _url_without_password(url: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"URL must be {' or '.join(s + '://host/...' for s in schemes)}")
    if parts.password is not None:
        raise ValueError("URL must not carry a password: set username and password_file")
    return url


class TlsConfig(_Strict):
    ca_file: Path | None = Field(default=None, description="PEM bundle of CAs that sign ingest's certificate "
                                 "(default: the system's roots)")
    cert_file: Path | None = Field(default=None, description="client certificate (PEM), for mTLS")
    key_file: Path | None = Field(default=None, description="client private key (PEM), for mTLS")
    server_name: str | None = Field(default=None, description="name to verify in ingest's certificate when it "
                                    "differs from the target's host")

    _files = field_validator("ca_file", "cert_file", "key_file")(_existing_file)

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("mTLS needs both cert_file and key_file")
        return self


class IngestConfig(_Strict):
    target: str = Field(default="localhost:50051", description="ingest service host:port")
    tls: TlsConfig | None = Field(default=None, description="TLS to ingest: the CA and this site's client "
                                  "certificate (common name site:<site_id>), which ingest requires (mutual TLS); "
                                  "absent: TLS verified against the system's roots, without a client certificate "
                                  "(ingest then refuses the connection)")
    plaintext: bool = Field(default=False, description="no TLS at all (a clear-text benchmark only: ingest "
                            "serving TLS refuses it)")
    window: int = Field(default=16, ge=1, le=1000, description="unacknowledged frames per camera at most")
    backoff_initial_s: float = Field(default=0.5, gt=0, description="first reconnect delay")
    backoff_max_s: float = Field(default=30.0, gt=0, description="longest reconnect delay")
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="largest gRPC message")


class SpoolConfig(_Strict):
    path: Path = Field(description="SQLite file of the store-and-forward spool (on a persistent volume)")
    max_bytes: int = Field(default=1 << 30, ge=1 << 16, description="JPEG bytes the spool holds at most; beyond, "
                           "the oldest unsent frames are dropped and counted")
    live_share: float = Field(default=0.5, ge=0, le=1, description="share of sends given to the newest frames "
                              "while a backlog drains oldest first")
    live_window_s: float = Field(default=30.0, gt=0, description="a frame spooled this recently counts as live")


class RtspSource(_Strict):
    type: Literal["rtsp"] = Field(description="source kind: an RTSP camera stream")
    url: str = Field(description="rtsp://host[:port]/path (no password in it)")
    transport: Literal["tcp", "udp"] = Field(default="tcp", description="RTP over the RTSP TCP connection, or UDP")
    username: str | None = Field(default=None, description="RTSP user")
    password_file: Path | None = Field(default=None, description="file holding the RTSP password")
    timeout_s: float = Field(default=10.0, gt=0, description="no packet for this long: the camera is gone")
    keyframes_only: bool = Field(default=False, description="decode only keyframes (far cheaper; for streams "
                                 "with a short GOP)")
    reconnect_initial_s: float = Field(default=1.0, gt=0, description="first reconnect delay")
    reconnect_max_s: float = Field(default=60.0, gt=0, description="longest reconnect delay")

    _url = field_validator("url")(_rtsp_url)
    _password = field_validator("password_file")(_existing_file)


class _HttpSource(_Strict):
    """What both HTTP sources take: the camera's URL, basic auth from a file, timeouts and reconnects."""

    url: str = Field(description="http(s) URL of the camera")
    username: str | None = Field(default=None, description="HTTP basic-auth user")
    password_file: Path | None = Field(default=None, description="file holding the HTTP password")
    timeout_s: float = Field(default=10.0, gt=0, description="no data for this long: the camera is gone")
    reconnect_initial_s: float = Field(default=1.0, gt=0, description="first reconnect delay")
    reconnect_max_s: float = Field(default=60.0, gt=0, description="longest reconnect delay")

    _url = field_validator("url")(_http_url)
    _password = field_validator("password_file")(_existing_file)


class MjpegSource(_HttpSource):
    type: Literal["mjpeg"] = Field(description="source kind: a multipart MJPEG stream over HTTP")


class SnapshotSource(_HttpSource):
    type: Literal["snapshot"] = Field(description="source kind: an HTTP URL polled for one JPEG at a time")
    interval_s: float = Field(default=0.5, gt=0, description="seconds between polls")
    timeout_s: float = Field(default=5.0, gt=0, description="per request")


class FileSource(_Strict):
    type: Literal["file"] = Field(description="source kind: a video file")
    path: Path = Field(description="a video file (any container and codec FFmpeg reads)")
    realtime: bool = Field(default=True, description="decode at the stream's own rate (false: as fast as possible)")
    loop: bool = Field(default=False, description="start again at the end")
    keyframes_only: bool = Field(default=False, description="decode only keyframes")


class FolderSource(_Strict):
    type: Literal["folder"] = Field(description="source kind: a folder of JPEG stills (FTP drop)")
    path: Path = Field(description="the FTP drop: each complete JPEG in it is one still, sent and then deleted")
    settle_s: float = Field(default=2.0, ge=0, description="a file is complete once its size and time have not "
                            "changed for this long and it ends with the JPEG end marker")
    poll_s: float = Field(default=0.5, gt=0, description="seconds between scans")
    pattern: str = Field(default="*.jp*g", description="file names to take (glob)")


Source = Annotated[RtspSource | MjpegSource | SnapshotSource | FileSource | FolderSource,
                   Field(discriminator="type")]


class PickConfig(_Strict):
    zone: tuple[float, float, float, float] = Field(
        default=(0.0, 0.0, 1.0, 1.0), description="trigger region x0, y0, x1, y1 as fractions of the frame")
    analysis_width: int = Field(default=160, ge=32, le=1920, description="motion is measured on the zone "
                                "scaled to this width")
    motion_threshold: int = Field(default=25, ge=1, le=255, description="grey-level change that counts as motion")
    motion_fraction: float = Field(default=0.01, gt=0, le=1, description="share of the zone that must move")
    confirm_frames: int = Field(default=2, ge=1, le=30, description="consecutive moving frames that start a pass")
    end_frames: int = Field(default=5, ge=1, le=300, description="still frames that end a pass")
    max_pass_s: float = Field(default=10.0, gt=0, description="a pass longer than this is cut (slow traffic)")
    frames_per_pass: int = Field(default=3, ge=1, le=20, description="stills sent per vehicle pass")
    max_frames_per_s: float = Field(default=5.0, gt=0, description="per-camera cap on stills (protects ingest)")
    burst: int = Field(default=10, ge=1, description="stills the cap lets through at once")
    jpeg_quality: int = Field(default=90, ge=30, le=100, description="JPEG quality of the stills")
    max_side: int = Field(default=1920, ge=320, le=8192, description="longest side of a still, pixels")

    @field_validator("zone")
    @classmethod
    def _zone(cls, zone: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = zone
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise ValueError("zone must be x0 < x1 and y0 < y1, all within 0..1")
        return zone


class CameraConfig(_Strict):
    camera_id: str = Field(pattern=_ID, description="the camera's id in ingest's registry")
    secret_file: Path = Field(description="file holding the camera's ingest credential (from CameraRegistry)")
    source: Source = Field(description="where the camera's frames come from, chosen by its type")
    pick: PickConfig = Field(default_factory=PickConfig, description="still picking (video sources)")
    latitude: float | None = Field(default=None, ge=-90, le=90, description="camera position")
    longitude: float | None = Field(default=None, ge=-180, le=180, description="camera position")
    heading_degrees: float | None = Field(default=None, ge=0, lt=360, description="bearing of the view")

    @field_validator("secret_file")
    @classmethod
    def _secret(cls, path: Path) -> Path:
        read_secret(path)  # readable and not empty, or the gateway does not start
        return path

    @model_validator(mode="after")
    def _position(self) -> CameraConfig:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("set both latitude and longitude, or neither")
        return self


class SiteConfig(_Strict):
    site_id: str = Field(pattern=_ID, description="the site (roadside cabinet) this gateway serves")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="the ingest service")
    spool: SpoolConfig = Field(description="the store-and-forward spool: stills wait there until ingest "
                               "acknowledges them")
    cameras: list[CameraConfig] = Field(min_length=1, description="the site's cameras")
    http_host: str = Field(default="0.0.0.0", description="address of /healthz and /metrics")
    http_port: int = Field(default=9108, ge=0, le=65535, description="port of /healthz and /metrics (0: none)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="log level")

    @field_validator("cameras")
    @classmethod
    def _unique(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for camera in cameras:
            if camera.camera_id in seen:
                raise ValueError(f"camera {camera.camera_id} is listed twice")
            seen.add(camera.camera_id)
        return cameras


def load_config(path: Path) -> SiteConfig:
    """Parse and validate a site's YAML file (pydantic ValidationError or ValueError on anything wrong)."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a mapping is expected at the top level")
    return SiteConfig.model_validate(data)


def redact_url(url: str) -> str:
    """The URL as a log line may show it: no user name, no query (tokens hide there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{re.sub(r'[?#].*', '', parts.path)}"
