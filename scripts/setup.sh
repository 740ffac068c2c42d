#!/usr/bin/env bash
# Install what g5kdeploy needs on a Debian machine, idempotently: Debian packages (only the missing ones,
# as root or through sudo), then a virtualenv in .venv with the package and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the local testbed and the test suite use: sshd for the nodes, a C compiler for the benchmark,
# Prometheus and the node exporter for the collector, curl for the snapshot API on the nodes, clang, libbpf and
# bpftool for the eBPF checks, Nix (parse and evaluate only) for the Nix checks, and fio for the second example
# workload (playbooks/fio-local.yaml). The VM testbed adds the
# kernel source and what builds it (pahole from dwarves for its BTF), QEMU, and libbpf1 for the guests' loader.
APT_PACKAGES=(python3 python3-venv openssh-server openssh-client openssh-sftp-server gcc libc6-dev curl
  prometheus prometheus-node-exporter clang llvm libbpf-dev libbpf1 bpftool nix-bin
  linux-source-6.1 build-essential make flex bison bc libelf-dev libssl-dev dwarves xz-utils
  qemu-system-x86 iproute2 busybox-static fio)

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})) && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.g5kdeploy-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test,vm]'
  # EnOSlib 10.9.0, a client the simulator's tests run unchanged, pins rich~=12.0 and paramiko<=3.5.1, older
  # than typer and fabric need: it is installed without its pins (its G5k provider works with ours).
  .venv/bin/python -m pip install -q --no-deps 'enoslib==10.9.0'
  .venv/bin/python -m pip install -q 'enoslib-ansible>=4,<11' cryptography 'jsonschema>=3,<5' 'netaddr~=0.8.0' \
    'requests[socks]' 'sshtunnel>=0.3.1' 'packaging>=21.3'
  touch "$stamp"
fi
