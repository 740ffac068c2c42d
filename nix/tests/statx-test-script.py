# ruff: noqa: F821
# The statx experiment's test script, run by the NixOS VM test (nix/tests/statx.nix) and by nxc's driver
# on Grid'5000 (`nxc driver -t`). nix/experiment.nix prepends KERNEL_OPTIONS (nix/kernel-options.json),
# PROGRAMS (nix/ebpf/programs.json) and TARGET (the overridden path); the driver provides machines,
# start_all and subtest. Machines are found by name prefix: the VM test has `exporter`, nxc may have
# `exporter1`, `exporter2`, ...
import json
import shlex

OVERRIDE_SIZE = 424242  # FAKE_SIZE in nix/ebpf/statx-override.bpf.c
OVERRIDE_INO = 4242  # FAKE_INO

collector = next(m for m in machines if m.name.startswith("collector"))
exporters = [m for m in machines if m.name.startswith("exporter")]
assert exporters, "no exporter machine"


def statx_of_target(machine: "Machine") -> dict:
    out = machine.succeed(f"statx-bench --json --iterations 10 --warmup 0 --threads 1 --path {shlex.quote(TARGET)}")
    return json.loads(out)["statx"][TARGET]


def wait_target_size(machine: "Machine", size: int) -> None:
    query = shlex.quote(f'.statx["{TARGET}"].size == {size}')
    cmd = f"statx-bench --json --iterations 10 --warmup 0 --path {shlex.quote(TARGET)} | jq -e {query}"
    machine.wait_until_succeeds(cmd, timeout=120)


def prometheus_value(query: str) -> str:
    """A command that succeeds once the instant query has a result (a false comparison has none)."""
    return (
        f"curl -sf http://localhost:9090/api/v1/query --data-urlencode {shlex.quote('query=' + query)}"
        " | jq -er '.data.result[0].value[1]'"
    )


start_all()

with subtest("the exporters run the kernel the override needs"):
    for m in exporters:
        m.wait_for_unit("multi-user.target")
        config = set(m.succeed("zcat /proc/config.gz").splitlines())
        missing = [f"CONFIG_{k}={v}" for k, v in KERNEL_OPTIONS.items() if f"CONFIG_{k}={v}" not in config]
        assert not missing, f"{m.name}: kernel lacks {missing}"

with subtest("ebpf_exporter serves our programs on 9435"):
    for m in exporters:
        m.wait_for_unit("prometheus-ebpf-exporter.service")
        m.wait_for_open_port(9435)
        m.wait_until_succeeds("curl -sf localhost:9435/metrics | grep -q '^ebpf_exporter_ebpf_program_attached'", 120)
        metrics = m.succeed("curl -sf localhost:9435/metrics").splitlines()
        for name in PROGRAMS:
            assert f'ebpf_exporter_enabled_configs{{name="{name}"}} 1' in metrics, f"{m.name}: {name} not enabled"
        attached = [line for line in metrics if line.startswith("ebpf_exporter_ebpf_program_attached{")]
        assert attached and all(line.endswith(" 1") for line in attached), f"{m.name}: {attached}"
        assert any(line.startswith("ebpf_exporter_statx_") for line in metrics), f"{m.name}: no statx metrics"

with subtest("the override answers for the target, and stopping the exporter detaches it"):
    for m in exporters:
        m.succeed("systemctl stop prometheus-ebpf-exporter")
        real = statx_of_target(m)
        assert real["ok"] and real["size"] != OVERRIDE_SIZE, f"{m.name}: {real}"
        m.succeed("systemctl start prometheus-ebpf-exporter")
        wait_target_size(m, OVERRIDE_SIZE)
        fake = statx_of_target(m)
        assert fake["ino"] == OVERRIDE_INO, f"{m.name}: {fake}"
        m.succeed("systemctl stop prometheus-ebpf-exporter")
        assert statx_of_target(m)["size"] == real["size"], f"{m.name}: still overridden after stop"
        m.succeed("systemctl start prometheus-ebpf-exporter")
        wait_target_size(m, OVERRIDE_SIZE)

with subtest("the collector scrapes every exporter"):
    collector.wait_for_unit("prometheus.service")
    collector.wait_for_open_port(9090)
    n = len(exporters)
    for query in (
        f'count(up{{job="ebpf"}} == 1) == {n}',
        f'count(up{{job="node"}} == 1) == {n}',
        f'count(ebpf_exporter_statx_override_total{{outcome="overridden"}} > 0) == {n}',
    ):
        collector.wait_until_succeeds(prometheus_value(query), 180)

with subtest("a TSDB snapshot"):
    out = collector.succeed("curl -sf -X POST http://localhost:9090/api/v1/admin/tsdb/snapshot")
    name = json.loads(out)["data"]["name"]
    collector.succeed(f"test -d /var/lib/prometheus2/data/snapshots/{shlex.quote(name)}")
