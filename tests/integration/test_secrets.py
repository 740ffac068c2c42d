"""The password reaches neither logs nor any file the agent writes, even at debug level in JSON."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import PASSWORD, playbook_text, write_playbook


def test_password_is_absent_from_every_log_line_and_file(g5k, sim, tmp_path, agent_env):
    book = write_playbook(tmp_path, playbook_text())
    outputs = [g5k("--log-json", "-v", "reserve", str(book), "--json")]
    outputs.append(g5k("--log-json", "-v", "status", "--json"))
    outputs.append(g5k("-v", "status"))
    outputs.append(g5k("--log-json", "-v", "release"))
    assert all(result.exit_code == 0 for result in outputs), [r.output for r in outputs]
    assert any('"event"' in result.stderr for result in outputs), "JSON logs were expected on stderr"
    for result in outputs:
        assert PASSWORD not in result.stdout and PASSWORD not in result.stderr
    written = [path for path in Path(agent_env["G5K_RESULTS_DIR"]).rglob("*") if path.is_file()]
    assert written
    for path in written:
        assert PASSWORD.encode() not in path.read_bytes(), path
