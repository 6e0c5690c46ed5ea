#!/usr/bin/env bash
# The README's first command: install everything, start MongoDB, Redis, Triton and the services, and feed
# synthetic camera frames through them, printing each read as it is stored. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m services.devstack up "$@"
