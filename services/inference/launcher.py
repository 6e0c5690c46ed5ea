"""Start the Triton Inference Server that ships in the ``nvidia-pytriton`` wheel, serving ``model_repository/``.

``python -m services.inference.launcher`` prepares the environment the python backend needs and replaces
itself with ``tritonserver`` (so SIGTERM from the shell, systemd or a test fixture reaches Triton directly).
The NGC image does not need this module: there, ``tritonserver`` is on PATH and the python backend is built in.

The triton virtual environment (``SIGHTLINE_TRITON_VENV``) holds ``nvidia-pytriton``, ``numpy<2`` and
``model_repository/requirements.txt``, and has this project installed (``pip install --no-deps -e .``) so
the python models can import ``services.inference``. What the python backend stub needs, found by trial:

* the stub built for the venv's Python version, placed as ``<backend dir>/python/triton_python_backend_stub``
  beside ``libtriton_python.so`` and ``triton_python_backend_utils.py`` (the wheel keeps one stub per
  Python version apart, so the launcher links a backend directory together inside the venv);
* that interpreter's ``libpython3.X.so`` on ``LD_LIBRARY_PATH`` (the stub links against it);
* the venv's ``bin`` first on ``PATH``: the embedded interpreter finds ``python3`` there, reads
  ``pyvenv.cfg`` and so imports from the venv's site-packages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tritonclient.grpc.aio as grpcclient
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from tritonclient.utils import InferenceServerException

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]

# Python backend shared memory per model instance: a 1280x720 frame and the 640x640 float tensors of one
# BLS call fit without regrowing. Kubernetes must mount /dev/shm large enough (emptyDir, medium Memory).
SHM_DEFAULT_BYTES = 16 * 1024 * 1024
SHM_GROWTH_BYTES = 16 * 1024 * 1024


class TritonLauncherSettings(BaseSettings):
    """Settings of the local Triton; environment variables ``SIGHTLINE_TRITON_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="SIGHTLINE_TRITON_", extra="forbid")

    venv: Path = Field(
        default=REPO_ROOT / ".venv-triton",
        description="Virtual environment holding nvidia-pytriton (tritonserver and the python backend) and this "
                    "project.")
    model_repository: Path = Field(
        default=REPO_ROOT / "model_repository", description="Model repository Triton serves.")
    address: str = Field(
        default="127.0.0.1",
        description="Address Triton's HTTP, gRPC and metrics ports bind to; they are unauthenticated, so locally "
                    "they listen on loopback only.")
    http_port: int = Field(default=8000, description="Port of Triton's HTTP endpoint.")
    grpc_port: int = Field(default=8001, description="Port of Triton's gRPC endpoint.")
    metrics_port: int = Field(default=8002, description="Port of Triton's Prometheus metrics endpoint.")
    model_control_mode: Literal["none", "poll"] = Field(
        default="none", description="none: load every model at start; poll: reload changed models (development). "
                                    "Both refuse the repository API's load and unload, which would run any "
                                    "python-backend model.py it is handed.")
    poll_seconds: int = Field(
        default=5, description="Seconds between Triton's scans of the model repository in poll mode.")
    log_verbose: int = Field(default=0, description="Triton's verbose log level (--log-verbose; 0: off).")
    trace_url: str = Field(
        default="",
        description="OTLP/HTTP traces endpoint (http://host:4318/v1/traces); set, Triton traces every request with "
                    "OpenTelemetry and continues the W3C trace context its gRPC callers send (empty: no tracing).")
    trace_service_name: str = Field(default="triton", description="Service name of Triton's traces.")
    grpc_tls_cert_file: Path | None = Field(
        default=None, description="Certificate (PEM) of Triton's gRPC endpoint: set, the endpoint serves TLS only "
                                  "(ingest verifies it against its CA); unset: plain text.")
    grpc_tls_key_file: Path | None = Field(default=None, description="Private key of that certificate (PEM).")


@dataclass(frozen=True)
class VenvPython:
    """Facts about the triton venv's interpreter that the python backend stub depends on."""

    version: str  # "3.11"
    libdir: Path  # holds libpython3.X.so


def inspect_venv(venv: Path) -> VenvPython:
    script = (
        "import json, sys, sysconfig; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
        "'libdir': sysconfig.get_config_var('LIBDIR')}))"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", script], check=True, capture_output=True, text=True)
    facts = json.loads(out.stdout)
    return VenvPython(version=facts["version"], libdir=Path(facts["libdir"]))


def tritonserver_dist(venv: Path, python: VenvPython) -> Path:
    dist = venv / "lib" / f"python{python.version}" / "site-packages" / "pytriton" / "tritonserver"
    if not (dist / "bin" / "tritonserver").is_file():
        raise FileNotFoundError(f"no tritonserver in {dist}: install nvidia-pytriton into {venv}")
    return dist


def link_backend_directory(venv: Path, dist: Path, python: VenvPython) -> Path:
    """Assemble ``<venv>/triton-backends/python`` from the wheel's backend and the matching stub."""
    backends = venv / "triton-backends"
    target = backends / "python"
    target.mkdir(parents=True, exist_ok=True)
    sources = {
        "libtriton_python.so": dist / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": dist / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": dist / "python_backend_stubs" / python.version / "triton_python_backend_stub",
    }
    for name, source in sources.items():
        if not source.is_file():
            raise FileNotFoundError(f"{source} missing from the nvidia-pytriton wheel")
        link = target / name
        if link.is_symlink() or link.exists():
            if link.resolve() == source.resolve():
                continue
            link.unlink()
        link.symlink_to(source)
    return backends


def build_command(settings: TritonLauncherSettings) -> tuple[list[str], dict[str, str]]:
    """The tritonserver argv and environment for ``settings``."""
    venv = settings.venv.resolve()
    python = inspect_venv(venv)
    dist = tritonserver_dist(venv, python)
    backends = link_backend_directory(venv, dist, python)
    argv = [
        str(dist / "bin" / "tritonserver"),
        f"--model-repository={settings.model_repository.resolve()}",
        f"--backend-directory={backends}",
        f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTES}",
        f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}",
        f"--http-address={settings.address}",
        f"--http-port={settings.http_port}",
        f"--grpc-address={settings.address}",
        f"--grpc-port={settings.grpc_port}",
        f"--metrics-address={settings.address}",
        f"--metrics-port={settings.metrics_port}",
        f"--model-control-mode={settings.model_control_mode}",
        f"--log-verbose={settings.log_verbose}",
    ]
    if settings.model_control_mode == "poll":
        argv.append(f"--repository-poll-secs={settings.poll_seconds}")
    if settings.grpc_tls_cert_file is not None:
        if settings.grpc_tls_key_file is None:
            raise SystemExit("SIGHTLINE_TRITON_GRPC_TLS_KEY_FILE is required with the certificate file")
        argv += ["--grpc-use-ssl=true", f"--grpc-server-cert={settings.grpc_tls_cert_file}",
                 f"--grpc-server-key={settings.grpc_tls_key_file}"]
    if settings.trace_url:
        argv += ["--trace-config=mode=opentelemetry", "--trace-config=rate=1", "--trace-config=level=TIMESTAMPS",
                 f"--trace-config=opentelemetry,url={settings.trace_url}",
                 f"--trace-config=opentelemetry,resource=service.name={settings.trace_service_name}"]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(python.libdir), env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(venv / "bin"), env.get("PATH", "")))
    # The stub's interpreter must not pick up the caller's venv or modules.
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return argv, env


def triton_client(url: str, ca_file: Path | None = None) -> grpcclient.InferenceServerClient:
    """An aio gRPC client of Triton: TLS verified against ``ca_file`` when given, else plain text."""
    if ca_file is None:
        return grpcclient.InferenceServerClient(url)
    return grpcclient.InferenceServerClient(url, ssl=True, root_certificates=str(ca_file))


async def wait_ready(url: str, within_s: float, models: tuple[str, ...] = (), ca_file: Path | None = None) -> None:
    """Wait until Triton at gRPC ``url`` (host:port) is ready and has ``models`` loaded (over TLS verified
    against ``ca_file`` when given)."""

    async def ready() -> bool:
        try:
            return await client.is_server_ready() and all([await client.is_model_ready(m) for m in models])
        except InferenceServerException:
            return False  # not listening yet

    client = triton_client(url, ca_file)
    try:
        async with asyncio.timeout(within_s):
            while True:  # polling: Triton offers no readiness notification
                if await ready():
                    return
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise TimeoutError(f"Triton at {url} not ready within {within_s:.0f} s (models {models})") from None
    finally:
        await client.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format='{"level": "%(levelname)s", "message": "%(message)s"}')
    settings = TritonLauncherSettings()
    argv, env = build_command(settings)
    log.info("starting %s", " ".join(argv))
    sys.stdout.flush()
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
