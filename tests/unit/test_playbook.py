from pathlib import Path

import pytest

from g5kdeploy.errors import ConfigError
from g5kdeploy.playbook import load_playbook, parse_playbook

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
version: 2
name: statx
testbed: grid5000
reservation:
  site: nancy
  roles:
    collector: {nodes: 1, cluster: gros}
    exporter: {nodes: 2, cluster: gros}
  walltime: 1:30
"""


@pytest.mark.parametrize("path", sorted((REPO / "playbooks").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_playbooks_load(path):
    playbook = load_playbook(path)
    assert playbook.collect is not None and playbook.collect.role == "collector"
    assert playbook.bench is not None and set(playbook.bench_roles) < set(playbook.reservation.roles)


def test_unquoted_walltime_is_hours_and_minutes_not_sexagesimal():
    playbook = parse_playbook(GOOD)
    assert playbook.reservation.walltime == "1:30"
    assert playbook.reservation.walltime_seconds == 5400


def test_walltime_beyond_24_hours_is_accepted():
    playbook = parse_playbook(GOOD.replace("walltime: 1:30", "walltime: 61:55"))
    assert playbook.reservation.walltime_seconds == 61 * 3600 + 55 * 60


def test_bare_integer_walltime_means_hours():
    assert parse_playbook(GOOD.replace("walltime: 1:30", "walltime: 2")).reservation.walltime_seconds == 7200


def test_unquoted_reservation_date_stays_paris_local_time():
    playbook = parse_playbook(GOOD + "  reservation: 2026-12-01 19:00:00\n")
    assert playbook.reservation.reservation == "2026-12-01 19:00:00"
    # 19:00 in Paris in winter is 18:00 UTC.
    assert playbook.reservation.reservation_epoch() == 1796148000


def test_every_problem_is_reported_with_its_line():
    text = GOOD.replace("nodes: 2", "nodes: 0").replace("walltime: 1:30", "walltime: soon") + "  colour: red\n"
    with pytest.raises(ConfigError) as caught:
        parse_playbook(text, source="bad.yaml")
    lines = str(caught.value).splitlines()
    assert lines == [
        "bad.yaml:8: reservation.roles.exporter.nodes: Input should be greater than 0 (got 0)",
        "bad.yaml:9: reservation.walltime: 'soon' is not an OAR duration: use H, H:MM or H:MM:SS (hours may exceed 24)",
        "bad.yaml:10: reservation.colour: unknown key (check its spelling and where it is indented); allowed "
        "under reservation: site, roles, walltime, queue, project, types, reservation, start_deadline, "
        "job_name, max_wait",
    ]


def test_start_deadline_accepts_a_duration_or_a_date():
    relative = parse_playbook(GOOD + "  start_deadline: 0:30\n").reservation
    assert relative.start_deadline_epoch(1000.0) == 1000.0 + 1800
    absolute = parse_playbook(GOOD + "  start_deadline: 2026-12-01T19:30\n").reservation
    assert absolute.start_deadline_epoch(0.0) == 1796149800


BENCH = (
    GOOD
    + """\
bench:
  roles: [exporter]
  workload:
    command: >-
      statx-bench --json --iterations 1000 --threads {threads}
      --path /etc/hostname
    metrics: {calls_per_s: calls_per_s, p50_ns: latency_ns.p50, p99_ns: latency_ns.p99}
    artifacts: [statx-bench]
  parameters:
    threads: [1, 4]
    ebpf: [on, off]
"""
)


def test_bench_section_reads_yaml_on_off_as_ebpf_states():
    bench = parse_playbook(BENCH).bench
    assert bench is not None
    assert bench.ebpf_states == ["on", "off"]
    assert bench.parameters["threads"] == [1, 4]


def test_the_sweep_is_the_product_of_the_parameters_minus_the_exclusions_repetitions_outermost():
    text = BENCH.replace(
        "    ebpf: [on, off]\n", "    ebpf: [on, off]\n  exclude: [{threads: 4, ebpf: on}]\n  repetitions: 2\n"
    )
    bench = parse_playbook(text).bench
    assert bench is not None
    assert [combination.key for combination in bench.combinations()] == [
        "threads-1_ebpf-on_rep-1", "threads-1_ebpf-off_rep-1", "threads-4_ebpf-off_rep-1",
        "threads-1_ebpf-on_rep-2", "threads-1_ebpf-off_rep-2", "threads-4_ebpf-off_rep-2",
    ]  # fmt: skip


def test_a_version_1_playbook_gets_the_exact_rewrite_of_its_bench_section():
    old = (Path(__file__).parents[2] / "playbooks" / "statx-local.yaml").read_text()
    old = old.replace("version: 2\n", "version: 1\n")
    old = (
        old[: old.index("bench:\n")]
        + (
            "bench:\n  roles: [exporter]\n  paths: [/tmp/g5k-statx-target, /etc/hostname]\n  iterations: 5000\n"
            "  threads: [1, 2]\n  ebpf: [off, on]\n  repetitions: 3\n"
        )
        + old[old.index("collect:\n") :]
    )
    with pytest.raises(ConfigError) as caught:
        parse_playbook(old, source="old.yaml")
    message = str(caught.value)
    assert message.startswith("old.yaml: version: 1 is the statx-only format")
    rewrite = message[message.index("version: 2\n") :]
    fixed = old.replace("version: 1\n", "")
    fixed = rewrite + "\n" + fixed[: fixed.index("bench:\n")] + fixed[fixed.index("collect:\n") :]
    bench = parse_playbook(fixed).bench
    assert (
        bench is not None and bench.repetitions == 3 and bench.parameters == {"threads": [1, 2], "ebpf": ["off", "on"]}
    )
    assert "--iterations 5000" in bench.workload.command and "--path /tmp/g5k-statx-target" in bench.workload.command


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("roles: [exporter]", "roles: [exporter, loader]"), ":11: bench.roles: loader not among reservation.roles"),
        (("threads: [1, 4]", "threads: [1, 1]"), "bench.parameters: threads: [1, 1] repeats a value"),
        (("threads: [1, 4]", "threads: []"), "bench.parameters.threads: List should have at least 1 item"),
        (
            ("ebpf: [on, off]", "ebpf: [maybe]"),
            "ebpf: ['maybe']: a reserved parameter, attaching the run's eBPF "
            'programs: its values are "on" and "off"',
        ),
        (("threads: [1, 4]", "threads: [1, 4]\n    repetition: [1]"), "bench.parameters: repetition: a reserved name"),
        (
            ("--threads {threads}", "--threads {threds}"),
            "bench.workload.command: {threds} is not a parameter; known: threads, ebpf, repetition, node",
        ),
        (("--threads {threads}", "--threads 1"), "bench.parameters: threads is not used in bench.workload.command"),
        (("--threads {threads}", "--threads {threads!r}"), "{threads}: no format spec or conversion"),
        (("--threads {threads}", "--threads {threads"), "bench.workload.command: "),
        (
            ("    artifacts: [statx-bench]", "    output: regex\n    pattern: 'calls=[0-9]+'"),
            "bench.workload.pattern: 'calls=[0-9]+' has no named group",
        ),
        (
            ("    artifacts: [statx-bench]", "    output: regex"),
            "bench.workload.pattern: output: regex needs a pattern",
        ),
        (
            ("    artifacts: [statx-bench]", "    output: regex\n    pattern: '(?P<x>[0-9]+'"),
            "bench.workload.pattern: not a regular expression",
        ),
        (("    artifacts: [statx-bench]", "    output: csv\n    pattern: 'x'"), "pattern: only for output: regex"),
        (("    artifacts: [statx-bench]", "    artifacts: [../elsewhere]"), "an artifact is statx-bench or a path"),
        (
            ("    ebpf: [on, off]", "    ebpf: [on, off]\n  exclude: [{threads: 3}]"),
            "bench.exclude: entry 1: threads: 3 is not one of its values",
        ),
        (
            ("    ebpf: [on, off]", "    ebpf: [on, off]\n  exclude: [{ebpf: on}, {ebpf: off}]"),
            "bench.exclude: every combination is excluded",
        ),
        (("  parameters:", "  timeout: -1\n  parameters:"), "bench.timeout: Input should be greater"),
        (("  parameters:", "  repeats: 3\n  parameters:"), "bench.repeats: unknown key"),
        (("  parameters:", "  iterations: 3\n  parameters:"), "bench: iterations are version-1 keys"),
    ],
)
def test_bad_bench_sections_are_refused_with_the_field(change, expected):
    assert change[0] in BENCH
    with pytest.raises(ConfigError) as caught:
        parse_playbook(BENCH.replace(*change), source="b.yaml")
    assert expected in str(caught.value)


def test_an_artifact_that_is_not_next_to_the_playbook_is_named_before_anything_runs(tmp_path):
    book = tmp_path / "b.yaml"
    book.write_text(BENCH.replace("    artifacts: [statx-bench]", "    artifacts: [statx-bench, tools/run.sh]"))
    with pytest.raises(ConfigError, match=r"bench.workload.artifacts: tools/run.sh is neither statx-bench nor a file"):
        load_playbook(book)
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "run.sh").write_text("#!/bin/sh\n")
    assert load_playbook(book).bench is not None


def test_types_take_the_oar_forms_and_refuse_shell_characters():
    real = ["deploy", "exotic", "container=123", "inner=4242", "timesharing=user,*", "monitor=prom_.*default_metrics"]
    real += ["token:licence=2", "postpone=2026-12-01 19:00", "origin=enoslib_g5k"]
    playbook = parse_playbook(GOOD + f"  types: {real!r}\n")
    assert playbook.reservation.types == real
    for bad in ["deploy;reboot", "night&&reboot", "a|b", "x=$(id)", "`id`", "deploy night", "", "exotic\n"]:
        with pytest.raises(ConfigError, match=r"reservation\.types: job type .* OAR types are single words"):
            parse_playbook(GOOD + f"  types: [{bad!r}]\n".replace("'", '"'))


def test_walltime_is_at_most_a_week():
    assert parse_playbook(GOOD.replace("walltime: 1:30", "walltime: 168:00")).reservation.walltime_seconds == 604800
    with pytest.raises(ConfigError, match=r"reservation\.walltime: '168:00:01' is longer than 168:00:00"):
        parse_playbook(GOOD.replace("walltime: 1:30", "walltime: 168:00:01"))
    with pytest.raises(ConfigError, match=r"nightly\.walltime: '200' is longer than 168:00:00"):
        parse_playbook(GOOD + "nightly:\n  walltime: 200\n")


@pytest.mark.timeout(10)
def test_aliases_share_settings_but_cannot_expand_without_bound():
    shared = GOOD.replace(
        "    collector: {nodes: 1, cluster: gros}\n    exporter: {nodes: 2, cluster: gros}\n",
        "    collector: &role {nodes: 1, cluster: gros}\n    exporter: {<<: *role, nodes: 2}\n",
    )
    roles = parse_playbook(shared).reservation.roles
    assert (roles["exporter"].nodes, roles["exporter"].cluster) == (2, "gros")
    laughs = (
        GOOD
        + "  types: &a0 [deploy]\n"
        + "".join(f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
    )
    with pytest.raises(ConfigError, match=r"b\.yaml:\d+: aliases expand to more than 10000 values"):
        parse_playbook(laughs, source="b.yaml")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "bench:\n  workload: {command: x}\n  repetition: 5\n",
            "did you mean repetitions? allowed under bench: roles,",
        ),
        ("deploy:\n  method: nxc\n  flavor: g5k-image\n", "did you mean flavour? allowed under deploy: method,"),
        ("collect:\n  quries: {}\n", "did you mean queries? allowed under collect: role, port, step, queries"),
        ("nightly:\n  metric: [p50_ns]\n", "did you mean metrics? allowed under nightly: start,"),
        ("ssh:\n  keys: ~/.ssh/id\n", "did you mean key? allowed under ssh: key"),
        ("colect: {}\n", "did you mean collect? allowed at the top: version, name"),
        ("  wall_time: 2\n", "did you mean walltime? allowed under reservation: site, roles,"),
    ],
    ids=["bench", "deploy", "collect", "nightly", "ssh", "top", "reservation"],
)
def test_an_unknown_key_lists_its_own_section_and_suggests_the_nearest(extra, expected):
    with pytest.raises(ConfigError, match="unknown key") as caught:
        parse_playbook(GOOD + extra)
    assert expected in str(caught.value)


def test_properties_pass_as_sql_and_fail_when_they_cannot_be():
    good = ["wattmeter='YES'", "cluster in ('gros', 'grisou') and (memnode > 2)", "a='it''s'", "x like 'gr%'"]
    for properties in good:
        assert parse_playbook(GOOD.replace("cluster: gros}", f'cluster: gros, properties: "{properties}"}}', 1))
    bad = {
        "(wattmeter='YES'": "opens a parenthesis it does not close",
        "wattmeter='YES')": "closes a parenthesis it never opened",
        "wattmeter='YES": "has an unbalanced quote",
        "wattmeter='YES' or": "ends with OR",
        "and wattmeter='YES'": "starts with AND",
        "memnode >": "ends with >",
        "wattmeter='YES'; drop table jobs": "';' ends the SQL statement",
        "x='1'}/nodes=9": "braces end the filter",
    }
    for properties, expected in bad.items():
        with pytest.raises(ConfigError, match=r"reservation\.roles\.collector\.properties") as caught:
            parse_playbook(GOOD.replace("cluster: gros}", f'cluster: gros, properties: "{properties}"}}', 1))
        assert expected in str(caught.value)


def test_the_wrong_file_lists_fifty_problems_then_a_count():
    with pytest.raises(ConfigError) as caught:
        parse_playbook(GOOD + "".join(f"key{i}: 1\n" for i in range(300)), source="b.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == 51
    assert lines[0].startswith("b.yaml:10: key0: unknown key")
    assert lines[-1] == "... and 250 more problems"


# The kernel section: a nixpkgs branch or a pinned source, patches next to the playbook, options under
# nix/kernel-options.json.
REV = "0123456789abcdef0123456789abcdef01234567"
SRI = "sha256-" + "A" * 43 + "="
SOURCE = f"{{github: jdoe/linux, rev: {REV}, hash: '{SRI}', version: 6.13.2}}"


def test_a_pinned_source_kernel_loads():
    kernel = parse_playbook(GOOD + f"kernel:\n  source: {SOURCE}\n  config: {{NET_SCHED: m, HZ: 1000}}\n").kernel
    assert kernel is not None and kernel.source is not None
    assert (kernel.source.owner, kernel.source.repo, kernel.source.rev) == ("jdoe", "linux", REV)
    assert kernel.config == {"NET_SCHED": "m", "HZ": "1000"}


def test_the_default_kernel_is_the_6_12_branch():
    kernel = parse_playbook(GOOD + "kernel: {config: {NET_SCHED: y}}\n").kernel
    assert kernel is not None and kernel.nixpkgs_branch == "6.12"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{github: jdoe/linux, hash: 'SRI', version: 6.13.2}", "kernel.source.rev: missing: pin the source"),
        (f"{{github: jdoe/linux, rev: {REV}, version: 6.13.2}}", "kernel.source.hash: missing: give the SRI hash"),
        ("{github: jdoe/linux, rev: main, hash: 'SRI', version: 6.13.2}", "kernel.source.rev: 'main' is not a commit"),
        (
            f"{{github: jdoe/linux, rev: {REV}, hash: {'0' * 64}, version: 6.13.2}}",
            "kernel.source.hash: '0000000000000000000000000000000000000000000000000000000000000000' is not an SRI",
        ),
        (f"{{github: linux, rev: {REV}, hash: 'SRI', version: 6.13.2}}", "kernel.source.github: 'linux': a GitHub"),
    ],
    ids=["no-rev", "no-hash", "branch-as-rev", "hex-hash", "no-owner"],
)
def test_an_unpinned_source_is_refused_naming_the_field(source, expected):
    with pytest.raises(ConfigError) as caught:
        parse_playbook(GOOD + f"kernel:\n  source: {source.replace('SRI', SRI)}\n")
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("{config: {BPF_KPROBE_OVERRIDE: n}}", "kernel.config.BPF_KPROBE_OVERRIDE: n contradicts nix/kernel-options"),
        ("{config: {FUNCTION_TRACER: m}}", "kernel.config.FUNCTION_TRACER: m contradicts"),
        ("{config: {CONFIG_NET_SCHED: y}}", "CONFIG_NET_SCHED: write the option without CONFIG_ (NET_SCHED)"),
        (f"{{branch: '6.6', source: {SOURCE}}}", "kernel.branch: a kernel is a nixpkgs branch or a source"),
        ("{branch: 6.10}", 'kernel.branch: 6.1: quote the branch, e.g. branch: "6.12"'),
        ("{patches: [../outside.patch]}", "kernel.patches: '../outside.patch': a patch is a file inside"),
    ],
    ids=["contradiction-n", "contradiction-m", "config-prefix", "branch-and-source", "unquoted-branch", "outside"],
)
def test_a_bad_kernel_section_is_refused_naming_the_field(section, expected):
    with pytest.raises(ConfigError) as caught:
        parse_playbook(GOOD + f"kernel: {section}\n")
    assert expected in str(caught.value)


def test_an_option_the_override_needs_may_be_repeated_with_its_value():
    kernel = parse_playbook(GOOD + "kernel: {config: {BPF_KPROBE_OVERRIDE: y}}\n").kernel
    assert kernel is not None and kernel.config == {"BPF_KPROBE_OVERRIDE": "y"}


def test_a_missing_patch_is_refused_with_its_index_and_where_it_was_looked_for(tmp_path):
    (tmp_path / "ok.patch").write_text("--- a/x\n+++ b/x\n")
    book = tmp_path / "exp.yaml"
    book.write_text(GOOD + "kernel: {patches: [ok.patch, fixes/missing.patch]}\n")
    with pytest.raises(ConfigError) as caught:
        load_playbook(book)
    message = str(caught.value)
    assert "kernel.patches[1]: fixes/missing.patch is not a file next to the playbook" in message
    assert str(tmp_path / "fixes/missing.patch") in message


@pytest.mark.parametrize(
    ("testbed", "section", "expected"),
    [
        ("vm", f"{{source: {SOURCE}}}", "kernel.source: the VM testbed builds Debian's linux-source-6.1"),
        ("vm", "{branch: '6.6'}", "kernel.branch: the VM testbed builds Debian's linux-source-6.1"),
        ("local", "{config: {NET_SCHED: y}}", "kernel: the local testbed runs this machine's kernel"),
    ],
)
def test_a_kernel_the_testbed_cannot_build_is_refused(testbed, section, expected):
    with pytest.raises(ConfigError) as caught:
        parse_playbook(GOOD.replace("testbed: grid5000", f"testbed: {testbed}") + f"kernel: {section}\n")
    assert expected in str(caught.value)


def test_the_vm_testbed_takes_patches_and_config():
    text = GOOD.replace("testbed: grid5000", "testbed: vm") + "kernel: {patches: [a.patch], config: {NET_SCHED: y}}\n"
    kernel = parse_playbook(text).kernel
    assert kernel is not None and kernel.patches == ["a.patch"]
