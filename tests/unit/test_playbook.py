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
        ("bench:\n  paths: [/etc/hostname]\n  iteratons: 5\n", "did you mean iterations? allowed under bench: roles,"),
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
