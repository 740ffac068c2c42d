#!/usr/bin/env bash
# Set up (if needed) and run the main job on the local testbed: the whole statx pipeline (reserve, deploy,
# bench, collect, release) through `g5k run`; it ends with the path of the run's report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/g5k run playbooks/statx-local.yaml "$@"
