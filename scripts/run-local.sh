#!/usr/bin/env bash
# Set up (if needed) and run the main job on the VM testbed: the whole statx experiment (reserve, boot the VM
# nodes on the experiment's kernel, deploy, bench with eBPF off and on, collect, release) through `g5k run`;
# it ends with the path of the run's report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/g5k run playbooks/statx-vm.yaml "$@"
