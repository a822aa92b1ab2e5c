#!/usr/bin/env bash
# The study's table, one workdir per row and seed; flags as python -m kdjax.reproduce --help.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m kdjax.reproduce "$@"
