#!/usr/bin/env bash
# Set up (if needed) and run the main job on the local testbed: reserve, deploy, bench, then release
# whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
G5K=.venv/bin/g5k
run_id=$($G5K reserve playbooks/statx-local.yaml --json "$@" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
release() { $G5K release "$run_id"; }
trap release EXIT
$G5K deploy "$run_id"
$G5K bench "$run_id"
$G5K status "$run_id"
