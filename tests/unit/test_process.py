"""The one door to local programs: what a failure, a timeout or a missing program tells the user."""

from __future__ import annotations

import pytest

from g5kdeploy.errors import ToolError
from g5kdeploy.process import PORT_RANGE, free_ports, is_running, port_free, run, stream
from g5kdeploy.waiting import wait_until


def test_a_failing_program_says_what_it_was_for_and_ends_with_its_stderr():
    script = "for i in $(seq 1 30); do echo diagnostic $i >&2; done; exit 3"
    with pytest.raises(ToolError) as caught:
        run(["sh", "-c", script], timeout=30, what="compile statx-bench")
    message = str(caught.value)
    assert message.startswith("cannot compile statx-bench: sh exited with status 3:\n")
    assert message.endswith("diagnostic 30") and "diagnostic 11\n" in message and "diagnostic 10\n" not in message
    assert caught.value.command == ["sh", "-c", script]  # to run it again by hand


def test_a_missing_program_is_named_without_a_traceback():
    with pytest.raises(ToolError, match=r"^cannot read your crontab: no-such-program-g5k not found$"):
        run(["no-such-program-g5k", "-l"], timeout=30, what="read your crontab")


def test_a_program_past_its_timeout_is_stopped_and_named():
    with pytest.raises(ToolError, match=r"^cannot stop the SSH master: sleep did not finish within 0.2 s$"):
        run(["sleep", "60"], timeout=0.2, what="stop the SSH master")


def test_without_check_the_caller_reads_the_exit_status_and_both_outputs():
    script = "cat; echo err >&2; exit 4"
    done = run(["sh", "-c", script], timeout=30, what="read a table", input="a line\n", check=False)
    assert (done.returncode, done.stdout, done.stderr) == (4, "a line\n", "err\n")


def test_a_child_never_gets_the_password(monkeypatch):
    monkeypatch.setenv("G5K_PASSWORD", "pw-Zq81-never-in-a-child")
    assert "pw-Zq81" not in run(["env"], timeout=30, what="list the environment").stdout


def test_a_long_program_shows_each_line_as_it_comes_and_keeps_them_in_its_log(tmp_path):
    seen: list[str] = []
    log = tmp_path / "build.log"
    stream(["sh", "-c", "echo '  CC a.o'; echo warning >&2; printf 'no newline'"], timeout=30, what="build",
           log_path=log, on_line=seen.append)  # fmt: skip
    assert seen == ["  CC a.o\n", "warning\n", "no newline"]
    assert log.read_text() == "  CC a.o\nwarning\nno newline"


def test_a_long_program_that_fails_ends_with_its_logs_tail(tmp_path):
    with pytest.raises(ToolError, match=r"^cannot build the kernel: sh exited with status 2:\n") as caught:
        stream(["sh", "-c", "echo '  CC a.o'; echo 'make: *** Error 2' >&2; exit 2"], timeout=30,
               what="build the kernel", log_path=tmp_path / "build.log", on_line=lambda _line: None)  # fmt: skip
    assert str(caught.value).endswith("\n  CC a.o\nmake: *** Error 2")


def test_a_silent_long_program_past_its_timeout_is_stopped_with_what_it_started(tmp_path):
    pid_file = tmp_path / "pid"
    script = f"sleep 300 & echo $! > {pid_file}; wait"
    with pytest.raises(ToolError, match=r"^cannot build the kernel: sh did not finish within 1 s$"):
        stream(["sh", "-c", script], timeout=1, what="build the kernel", log_path=tmp_path / "log",
               on_line=lambda _line: None)  # fmt: skip
    grandchild = int(pid_file.read_text())
    wait_until(lambda: not is_running(grandchild), timeout=10, what="the build's own child to be stopped")


def test_free_ports_are_distinct_free_on_every_address_and_below_the_ephemeral_range():
    addresses = ["127.0.0.1", "127.0.9.51"]
    ports = free_ports(addresses, 3, avoid={PORT_RANGE[0] + 1})
    assert len(set(ports)) == 3 and PORT_RANGE[0] + 1 not in ports
    assert all(PORT_RANGE[0] <= port <= PORT_RANGE[1] < 32768 for port in ports)
    assert all(port_free(address, port) for address in addresses for port in ports)
