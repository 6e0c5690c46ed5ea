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

    target: str = Field(
        default="localhost:50051",
        description="Ingest service (host:port) the frames are streamed to; it also serves the camera registry.")
    agency_id: str = Field(default="demo-pd", description="Agency the simulated cameras are registered to.")
    site_id: str = Field(
        default="dev-site", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Gateway site the cameras are registered at: the site named by the client certificate the "
                    "simulator presents (SIGHTLINE_TLS_CLIENT_CERT_FILE; the local stack's gateway-dev-site one).")
    cameras: int = Field(default=1, ge=1, le=10_000, description="Number of simulated cameras.")
    camera_prefix: str = Field(
        default="sim-cam", description="Camera ids are <prefix>-001, <prefix>-002, and so on.")
    fps: float = Field(
        default=2.0, ge=0,
        description="Frames per second per camera; 0 sends as fast as the window of unacknowledged frames allows.")
    max_rate: float = Field(
        default=0.0, ge=0, description="Ceiling on frames per second over all cameras, resends included; 0: none.")
    frames: int | None = Field(
        default=None, ge=1,
        description="Frames per camera; with neither this nor duration_s (the default), runs until interrupted.")
    duration_s: float | None = Field(
        default=None, gt=0,
        description="Seconds of sending; with neither this nor frames (the default), runs until interrupted.")
    folder: Path | None = Field(
        default=None,
        description="Folder of JPEGs (*.jpg, *.jpeg) to send instead of synthetic scenes; each camera cycles "
                    "through them.")
    seed: int = Field(
        default=0, ge=0, description="Seed of the synthetic scenes, the camera positions and the resend jitter.")
    difficulty: float = Field(
        default=0.0, ge=0, le=1,
        description="Difficulty of the synthetic scenes, from 0 (clear daylight close-ups) to 1 (small, skewed, "
                    "blurred, noisy, often night).")
    pass_frames: int = Field(default=6, ge=1, le=100, description="frames per synthetic vehicle pass")
    run_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Prefix of the frame ids; the same run id and seed give the same ids, so a rerun is idempotent "
                    "(default: the start time).")
    window: int = Field(default=32, ge=1, le=10_000, description="unacknowledged frames at most")
    backoff_initial_s: float = Field(
        default=0.2, gt=0,
        description="Seconds before the first retry of a frame rejected with a retryable code or of a camera "
                    "registration; the delay doubles, with jitter, on each further retry.")
    backoff_max_s: float = Field(default=10.0, gt=0, description="Longest delay, in seconds, between retries.")
    rpc_timeout_s: float = Field(default=10.0, gt=0, description="camera registration calls")
    admin_token: str = Field(
        default="", repr=False,
        description="Access token of an agency admin (cameras:manage) with which the cameras are registered.")
    credentials_file: Path = Field(
        default=LOCAL_DATA_DIR.parent / "camera-credentials.json",
        description="Where the cameras' gateway secrets are kept between runs (JSON camera id -> secret, mode "
                    "0600); a camera registered before whose secret is not there gets a new one (RotateCameraSecret).")
    max_message_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest gRPC message sent or accepted, in bytes.")
    latitude: float = Field(
        default=37.7749, ge=-90, le=90,
        description="Latitude of the point within about 2 km of which the cameras are scattered.")
    longitude: float = Field(
        default=-122.4194, ge=-180, le=180,
        description="Longitude of the point within about 2 km of which the cameras are scattered.")
    send_location: bool = Field(
        default=True, description="Register the cameras and send the frames with GPS position and heading.")
    print_reads: bool = Field(default=False, description="Print the reads of every acknowledgement.")
    progress: bool = Field(default=True, description="Show a progress bar of acknowledged frames on stderr.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level of the log records written (DEBUG, INFO, WARNING or ERROR).")


def gateway_tls() -> TlsSettings:
    """TLS to ingest as a camera gateway: SIGHTLINE_TLS_* settings; with dev keys and no client certificate
    named, the local stack's CA and its dev-site gateway certificate (as tools find the stack's dev keys)."""
    tls = TlsSettings()
    if tls.tls_enabled and tls.tls_client_cert_file is None and tls.dev_keys:
        folder = tls.data_dir / "tls"
        return tls.model_copy(update={"tls_client_cert_file": folder / "gateway-dev-site.crt",
                                      "tls_client_key_file": folder / "gateway-dev-site.key"})
    return tls
