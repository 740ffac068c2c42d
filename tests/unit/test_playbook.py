from pathlib import Path

import pytest

from g5kdeploy.errors import ConfigError
from g5kdeploy.playbook import load_playbook, parse_playbook

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
version: 1
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
    assert set(playbook.reservation.roles) == {"collector", "exporter"}


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
  paths: [/etc/hostname]
  threads: [1, 4]
  ebpf: [on, off]
"""
)


def test_bench_section_reads_yaml_on_off_as_ebpf_states():
    bench = parse_playbook(BENCH).bench
    assert bench is not None
    assert bench.ebpf == ["on", "off"]
    assert bench.threads == [1, 4]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("roles: [exporter]", "roles: [exporter, loader]"), ":11: bench.roles: loader not among reservation.roles"),
        (("paths: [/etc/hostname]", "paths: [etc/hostname]"), "bench.paths: 'etc/hostname' is relative"),
        (("paths: [/etc/hostname]", "paths: []"), "bench.paths: List should have at least 1 item"),
        (("threads: [1, 4]", "threads: [1, 1]"), "bench.threads: [1, 1] repeats an entry"),
        (("threads: [1, 4]", "threads: [0]"), "bench.threads.0: Input should be greater than 0"),
        (("ebpf: [on, off]", "ebpf: [maybe]"), "bench.ebpf.0: 'maybe' is not allowed; expected 'on' or 'off'"),
        (("paths: [/etc/hostname]", "paths: [/etc/hostname]\n  timeout: -1"), "bench.timeout: Input should be greater"),
        (("paths: [/etc/hostname]", "paths: [/etc/hostname]\n  repeats: 3"), "bench.repeats: unknown key"),
    ],
)
def test_bad_bench_sections_are_refused_with_the_field(change, expected):
    with pytest.raises(ConfigError) as caught:
        parse_playbook(BENCH.replace(*change), source="b.yaml")
    assert expected in str(caught.value)
