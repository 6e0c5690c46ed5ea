#!/usr/bin/env bash
# The README's second command: install (if needed) and run the whole test suite. The fixtures start real
# mongod, Redis and Triton on free ports; nothing needs to be running beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
