"""Bad playbooks and flags: a clear error naming the field and the fix, exit code 2, no job submitted."""

from __future__ import annotations

import os

import pytest

from tests.conftest import playbook_text

GOOD = playbook_text()
BENCH = GOOD + 'bench:\n  workload: {command: "statx-bench --json --path /etc/hostname"}\n'
# The classic "billion laughs": nine levels of ten aliases each, 10^9 strings once expanded.
LAUGHS = (
    GOOD
    + 'lol0: &l0 "lol"\n'
    + "".join(f"lol{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]\n" for level in range(1, 10))
)

PLAYBOOK_CASES = {
    "not-yaml": ("version: 2\nname: [unclosed\n", "exp.yaml:3: not valid YAML"),
    "not-a-mapping": ("- version: 1\n", "a playbook is a YAML mapping"),
    "version": (GOOD.replace("version: 2", "version: 3"), "exp.yaml:1: version: 3 is not allowed; expected 2"),
    "name-missing": (GOOD.replace("name: exp\n", ""), "name: missing (this field is required)"),
    "name-spaces": (GOOD.replace("name: exp", "name: My Run"), "exp.yaml:2: name: 'My Run': use lower-case"),
    "testbed": (GOOD.replace("testbed: grid5000", "testbed: cloud"), "testbed: 'cloud' is not allowed"),
    "reservation-missing": ("version: 2\nname: exp\ntestbed: grid5000\n", "reservation: missing"),
    "roles-empty": (
        "version: 2\nname: exp\ntestbed: grid5000\nreservation:\n  site: nancy\n  roles: {}\n",
        "exp.yaml:6: reservation.roles: no roles: add at least one",
    ),
    "nodes-zero": (
        GOOD.replace("nodes: 2", "nodes: 0"),
        "exp.yaml:8: reservation.roles.exporter.nodes: Input should be",
    ),
    "nodes-word": (GOOD.replace("nodes: 2", "nodes: two"), "reservation.roles.exporter.nodes"),
    "min-above-nodes": (GOOD.replace("nodes: 2,", "nodes: 2, min_nodes: 3,"), "min_nodes (3) is larger than nodes (2)"),
    "role-typo": (
        GOOD.replace("cluster: gros}\n", "clustr: gros}\n", 1),
        "reservation.roles.collector.clustr: unknown key",
    ),
    "walltime-word": (
        GOOD.replace("walltime: 1:00", "walltime: soon"),
        "exp.yaml:9: reservation.walltime: 'soon' is not",
    ),
    "walltime-zero": (GOOD.replace("walltime: 1:00", "walltime: 0:00"), "'0:00' is zero"),
    "queue": (GOOD + "  queue: fast\n", "reservation.queue: 'fast' is not allowed; expected 'default'"),
    "reservation-date": (GOOD + "  reservation: tomorrow 19h\n", "not a date OAR accepts: use 'YYYY-MM-DD hh:mm:ss'"),
    "reservation-impossible-date": (GOOD + "  reservation: 2026-02-30 19:00\n", "is not a real date"),
    "start-deadline": (GOOD + "  start_deadline: later\n", "give a duration after submission"),
    "types": (GOOD + "  types: [two words]\n", "OAR types are single words"),
    "site-empty-list": (GOOD.replace("site: nancy", "site: []"), "an empty list: name at least one site"),
    "site-auto-in-list": (GOOD.replace("site: nancy", "site: [auto, nancy]"), "'auto' stands alone"),
    "duplicate-key": (GOOD + "  walltime: 2:00\n", "walltime: given twice"),
    "top-level-typo": (GOOD + "deploy_typo: {}\n", "deploy_typo: unknown key"),
    "unknown-site": (GOOD.replace("site: nancy", "site: atlantis"), "reservation.site: unknown site 'atlantis'"),
    "unknown-cluster": (GOOD.replace("cluster: gros", "cluster: nope"), "no cluster 'nope' on nancy"),
    "cluster-elsewhere": (GOOD.replace("cluster: gros", "cluster: paravance"), "(it is on rennes; add that site)"),
    # Values that would reach OAR unchecked.
    "walltime-absurd": (
        GOOD.replace("walltime: 1:00", "walltime: 99999999999999999999:00"),
        "exp.yaml:9: reservation.walltime: '99999999999999999999:00' is longer than 168:00:00",
    ),
    "walltime-thousands-of-digits": (
        GOOD.replace("walltime: 1:00", "walltime: " + "9" * 5000 + ":00"),
        "reservation.walltime: '9999999999",
    ),
    "nodes-yes": (
        GOOD.replace("nodes: 2", "nodes: yes"),
        "exp.yaml:8: reservation.roles.exporter.nodes: Input should be",
    ),
    "nodes-true": (
        GOOD.replace("nodes: 2", "nodes: true"),
        "reservation.roles.exporter.nodes: Input should be a valid",
    ),
    "nodes-thousands-of-digits": (
        GOOD.replace("nodes: 2", "nodes: 1" + "0" * 5000),
        "reservation.roles.exporter.nodes",
    ),
    "repetitions-true": (BENCH + "  repetitions: true\n", "bench.repetitions: Input should be a valid integer"),
    "port-yes": (GOOD + "collect:\n  port: yes\n", "collect.port: Input should be a valid integer"),
    "types-semicolon": (GOOD + "  types: [deploy;reboot]\n", "reservation.types: job type 'deploy;reboot'"),
    "types-and-and": (GOOD + "  types: [night&&reboot]\n", "reservation.types: job type 'night&&reboot'"),
    "project-newline": (GOOD + '  project: "team\\nx"\n', "reservation.project: 'team\\nx'"),
    "job-name-newline": (GOOD + '  job_name: "exp\\n"\n', "reservation.job_name: 'exp\\n'"),
    "reservation-trailing-newline": (GOOD + '  reservation: "2036-12-01 19:00\\n"\n', "reservation.reservation"),
    "properties-open-parenthesis": (
        GOOD.replace("cluster: gros}\n", "cluster: gros, properties: \"(wattmeter='YES'\"}\n", 1),
        "reservation.roles.collector.properties: \"(wattmeter='YES'\" opens a parenthesis it does not close",
    ),
    "properties-dangling-and": (
        GOOD.replace("cluster: gros}\n", "cluster: gros, properties: \"wattmeter='YES' AND\"}\n", 1),
        "reservation.roles.collector.properties: \"wattmeter='YES' AND\" ends with AND",
    ),
    "properties-brace": (
        GOOD.replace("cluster: gros}\n", "cluster: gros, properties: \"cluster='gros'}/nodes=9\"}\n", 1),
        "reservation.roles.collector.properties",
    ),
    # Known to the reference API before anything is submitted.
    "reservation-past": (
        GOOD + "  reservation: 2020-01-01 10:00:00\n",
        "reservation.reservation: 2020-01-01 10:00:00 is in the past",
    ),
    "nodes-beyond-cluster": (
        GOOD.replace("nodes: 2", "nodes: 500"),
        "reservation.roles.exporter.nodes: 500 nodes on cluster gros, which has 124",
    ),
    "roles-beyond-cluster": (
        GOOD.replace("nodes: 2", "nodes: 124"),
        "reservation.roles: collector (1) + exporter (124) = 125 nodes on cluster gros, which has 124",
    ),
    "queue-of-cluster": (
        GOOD.replace("cluster: gros", "cluster: grue"),
        "reservation.queue: cluster grue takes jobs in the production queue, not default",
    ),
    # Typos name the right section's keys, with a suggestion.
    "bench-typo": (
        BENCH + "  repetition: 5\n",
        "bench.repetition: unknown key (check its spelling and where it is indented); did you mean repetitions? "
        "allowed under bench: roles, workload, parameters, exclude",
    ),
    "deploy-typo": (
        GOOD + "deploy:\n  method: nxc\n  retrys: 1\n",
        "deploy.retrys: unknown key (check its spelling and where it is indented); did you mean retries? "
        "allowed under deploy: method, flavour",
    ),
    "nightly-typo": (
        GOOD + "nightly:\n  threshhold: 0.1\n",
        "did you mean threshold? allowed under nightly: start, walltime, keep",
    ),
    "binary-cache-typo": (
        GOOD + "deploy:\n  method: nxc\n  binary_cache: {url: https://c.example.org, publickey: c-1:AAAA}\n",
        "deploy.binary_cache.publickey: unknown key (check its spelling and where it is indented); "
        "did you mean public_key? allowed under deploy.binary_cache: url, public_key",
    ),
    # Only the documented words switch eBPF.
    "ebpf-yes": (BENCH + "  parameters: {ebpf: [off, yes]}\n", "bench.parameters: ebpf: ['off', 'yes']: a reserved"),
    "ebpf-true": (BENCH + "  parameters: {ebpf: [true]}\n", "bench.parameters.ebpf.0"),
    # Bad workloads, named before anything is submitted.
    "workload-unknown-field": (
        GOOD + 'bench:\n  workload: {command: "sleep {secs}"}\n',
        "bench.workload.command: {secs} is not a parameter",
    ),
    "workload-regex-without-groups": (
        GOOD + 'bench:\n  workload: {command: "echo 1", output: regex, pattern: "[0-9]+"}\n',
        "bench.workload.pattern: '[0-9]+' has no named group",
    ),
    "workload-empty-parameter": (
        GOOD + 'bench:\n  workload: {command: "sleep {s}"}\n  parameters: {s: []}\n',
        "bench.parameters.s: List should have at least 1 item",
    ),
    "workload-reserved-name": (
        GOOD + 'bench:\n  workload: {command: "sleep {node}"}\n  parameters: {node: [a]}\n',
        "bench.parameters: node: a reserved name",
    ),
    # Bounded reading.
    "recursive-alias": (GOOD + "  types: &types [*types]\n", "exp.yaml:11: alias *types is used inside its own anchor"),
    "deep-nesting": (GOOD + "deep: " + "[" * 3000 + "]" * 3000 + "\n", "nested deeper than"),
    "too-large": (GOOD + ("# padding\n" * 120_000), "exp.yaml: 1.1 MiB, more than a playbook's limit of 1 MiB"),
}


@pytest.mark.parametrize("case", sorted(PLAYBOOK_CASES))
def test_bad_playbook_is_refused_before_anything_is_submitted(case, g5k, sim, tmp_path):
    text, expected = PLAYBOOK_CASES[case]
    book = tmp_path / "exp.yaml"
    book.write_text(text)
    result = g5k("reserve", str(book))
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert sim.simulator.jobs() == []


@pytest.mark.timeout(20)
def test_alias_expansion_is_refused_without_expanding(g5k, sim, tmp_path):
    book = tmp_path / "exp.yaml"
    book.write_text(LAUGHS)
    result = g5k("reserve", str(book))
    assert result.exit_code == 2, result.output
    assert "aliases expand to more than 10000 values" in result.stderr
    assert sim.simulator.jobs() == []


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_blocking(g5k, sim, tmp_path):
    fifo = tmp_path / "exp.yaml"
    os.mkfifo(fifo)
    result = g5k("reserve", str(fifo))
    assert result.exit_code == 2, result.output
    assert f"{fifo}: not a regular file (a FIFO)" in result.stderr
    assert sim.simulator.jobs() == []


@pytest.mark.timeout(20)
def test_an_endless_device_is_refused_without_reading_it(g5k, sim):
    result = g5k("reserve", "/dev/zero")
    assert result.exit_code == 2, result.output
    assert "/dev/zero: not a regular file (a character device)" in result.stderr
    assert sim.simulator.jobs() == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", "exp.yaml: not UTF-8 text (byte 0x89 at offset 0)"),
        (GOOD.encode("utf-16"), "exp.yaml: not UTF-8 text (byte 0xff at offset 0)"),
    ],
    ids=["binary", "utf-16"],
)
def test_text_that_is_not_utf8_names_the_file(content, expected, g5k, sim, tmp_path):
    book = tmp_path / "exp.yaml"
    book.write_bytes(content)
    result = g5k("reserve", str(book))
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert "save the playbook as UTF-8" in result.stderr
    assert sim.simulator.jobs() == []


def test_a_refusal_by_oar_names_the_field_and_quotes_oar_without_the_real_url(g5k, sim, tmp_path):
    """A properties filter that parses but names no OAR column: only OAR can tell."""
    book = tmp_path / "exp.yaml"
    book.write_text(GOOD.replace("cluster: gros}\n", "cluster: gros, properties: \"colour='blue'\"}\n", 1))
    result = g5k("reserve", str(book))
    assert result.exit_code == 2, result.output
    assert "reservation.roles (nodes, cluster, properties): OAR refused the job on nancy" in result.stderr
    assert 'column "colour" does not exist' in result.stderr
    assert "api.grid5000.fr" not in result.output
    assert sim.simulator.jobs() == []


FLAG_CASES = {
    "no-playbook-no-run": (["reserve"], "give a PLAYBOOK to start a run, or --run RUN"),
    "playbook-and-run": (["reserve", "{book}", "--run", "x"], "give a PLAYBOOK to start a run, or --run RUN"),
    "unknown-run": (["reserve", "--run", "nosuchrun"], "no run 'nosuchrun'"),
    "missing-playbook": (["reserve", "{tmp}/absent.yaml"], "absent.yaml: cannot read the playbook"),
    "unknown-option": (["reserve", "{book}", "--bogus"], "No such option: --bogus"),
    "release-run-and-all": (["release", "x", "--all"], "give a RUN or --all, not both"),
    "release-unknown-run": (["release", "nosuchrun"], "no run 'nosuchrun'"),
}


@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_bad_flags_are_refused(case, g5k, sim, tmp_path):
    args, expected = FLAG_CASES[case]
    book = tmp_path / "exp.yaml"
    book.write_text(GOOD)
    result = g5k(*(arg.format(book=book, tmp=tmp_path) for arg in args))
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert sim.simulator.jobs() == []


def test_world_readable_credentials_file_is_refused_with_the_fix(g5k, sim, tmp_path, monkeypatch, agent_env):
    monkeypatch.delenv("G5K_PASSWORD")
    config = tmp_path / "home" / ".python-grid5000.yaml"
    config.write_text("username: jdoe\npassword: hunter2\n")
    config.chmod(0o644)
    book = tmp_path / "exp.yaml"
    book.write_text(GOOD)
    result = g5k("reserve", str(book))
    assert result.exit_code == 2
    assert f"hint: run: chmod 600 {config}" in result.stderr
    assert "hunter2" not in result.output
    assert sim.simulator.jobs() == []
