"""Settings of the camera-gateway simulator (environment prefix ``SIGHTLINE_SIM_``; flags override them)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.auth import LOCAL_DATA_DIR
from services.common.tls import TlsSettings


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_SIM_", extra="forbid", frozen=True)

    # The ingest service (it also serves the camera registry).
    target: str = "localhost:50051"
    agency_id: str = "demo-pd"
    # The site the cameras are registered at: the site named by the client certificate the simulator presents
    # (SIGHTLINE_TLS_CLIENT_CERT_FILE; the local stack's gateway-dev-site certificate by default).
    site_id: str = Field(default="dev-site", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    cameras: int = Field(default=1, ge=1, le=10_000)
    camera_prefix: str = "sim-cam"
    # Frames per second per camera; 0 sends as fast as the window of unacknowledged frames allows.
    fps: float = Field(default=2.0, ge=0)
    # Ceiling on frames per second over all cameras, resends included; 0 = none.
    max_rate: float = Field(default=0.0, ge=0)
    # Frames per camera, and/or seconds of sending; with neither (the default), runs until interrupted.
    frames: int | None = Field(default=None, ge=1)
    duration_s: float | None = Field(default=None, gt=0)
    # JPEGs (*.jpg, *.jpeg) to send instead of synthetic scenes; each camera cycles through them.
    folder: Path | None = None
    seed: int = Field(default=0, ge=0)
    difficulty: float = Field(default=0.0, ge=0, le=1)
    pass_frames: int = Field(default=6, ge=1, le=100, description="frames per synthetic vehicle pass")
    # Prefix of frame ids; the same run id and seed give the same ids, so a rerun is idempotent.
    # Default: the start time.
    run_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    window: int = Field(default=32, ge=1, le=10_000, description="unacknowledged frames at most")
    backoff_initial_s: float = Field(default=0.2, gt=0)
    backoff_max_s: float = Field(default=10.0, gt=0)
    rpc_timeout_s: float = Field(default=10.0, gt=0, description="camera registration calls")
    # An agency admin's access token (cameras:manage) to register the cameras with.
    admin_token: str = Field(default="", repr=False)
    # Where the cameras' gateway secrets are kept between runs (JSON camera id -> secret, mode 0600). A camera
    # registered before whose secret is not there gets a new one (RotateCameraSecret).
    credentials_file: Path = LOCAL_DATA_DIR.parent / "camera-credentials.json"
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Camera positions: scattered within about 2 km of this point.
    latitude: float = Field(default=37.7749, ge=-90, le=90)
    longitude: float = Field(default=-122.4194, ge=-180, le=180)
    send_location: bool = True
    print_reads: bool = False
    progress: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def gateway_tls() -> TlsSettings:
    """TLS to ingest as a camera gateway: SIGHTLINE_TLS_* settings; with dev keys and no client certificate
    named, the local stack's CA and its dev-site gateway certificate (as tools find the stack's dev keys)."""
    tls = TlsSettings()
    if tls.tls_enabled and tls.tls_client_cert_file is None and tls.dev_keys:
        folder = tls.data_dir / "tls"
        return tls.model_copy(update={"tls_client_cert_file": folder / "gateway-dev-site.crt",
                                      "tls_client_key_file": folder / "gateway-dev-site.key"})
    return tls
