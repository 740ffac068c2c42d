"""Bad playbooks and flags: a clear error naming the field and the fix, exit code 2, no job submitted."""

from __future__ import annotations

import pytest

from tests.conftest import playbook_text

GOOD = playbook_text()

PLAYBOOK_CASES = {
    "not-yaml": ("version: 1\nname: [unclosed\n", "exp.yaml:3: not valid YAML"),
    "not-a-mapping": ("- version: 1\n", "a playbook is a YAML mapping"),
    "version": (GOOD.replace("version: 1", "version: 2"), "exp.yaml:1: version: 2 is not allowed; expected 1"),
    "name-missing": (GOOD.replace("name: exp\n", ""), "name: missing (this field is required)"),
    "name-spaces": (GOOD.replace("name: exp", "name: My Run"), "exp.yaml:2: name: 'My Run': use lower-case"),
    "testbed": (GOOD.replace("testbed: grid5000", "testbed: cloud"), "testbed: 'cloud' is not allowed"),
    "reservation-missing": ("version: 1\nname: exp\ntestbed: grid5000\n", "reservation: missing"),
    "roles-empty": (
        "version: 1\nname: exp\ntestbed: grid5000\nreservation:\n  site: nancy\n  roles: {}\n",
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
