"""The nightly trigger: systemd user units (checked by systemd-analyze), crontab lines, the NixOS module."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest

from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.nightly.install import (
    crontab_line,
    daily_calendar,
    install_cron,
    install_systemd,
    systemd_enable_commands,
    systemd_units,
    uninstall_cron,
    uninstall_systemd,
)

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "nix/modules/g5k-nightly.nix"
# An executable that surely exists: systemd-analyze verify checks ExecStart's binary.
G5K = Path(sys.executable).parent / "g5k"
if not G5K.exists():
    G5K = Path("/bin/true")


def parse_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # unit keys are case-sensitive
    parser.read_string(text)
    return parser


@pytest.fixture
def playbook(tmp_path: Path) -> Path:
    path = tmp_path / "my experiments" / "statx.yaml"
    path.parent.mkdir()
    path.write_text("version: 2\n")
    return path


def test_units(tmp_path: Path, playbook: Path) -> None:
    units = systemd_units(playbook, g5k=G5K, results_dir=tmp_path / "results", on_calendar="18:30", name="statx")
    assert set(units) == {"statx.service", "statx.timer"}
    service = parse_unit(units["statx.service"])["Service"]
    assert service["Type"] == "oneshot"
    words = shlex.split(service["ExecStart"])  # systemd's quoting is shell-like for these words
    assert words == [str(G5K.resolve()), "--results-dir", str(tmp_path / "results"), "nightly", "run", str(playbook)]
    assert service["WorkingDirectory"] == str(playbook.parent)
    assert service["EnvironmentFile"].startswith("-%h/")
    timer = parse_unit(units["statx.timer"])
    assert timer["Timer"]["OnCalendar"] == "*-*-* 18:30:00 Europe/Paris"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "statx.service"
    assert timer["Install"]["WantedBy"] == "timers.target"
    # Credentials stay in the user's files.
    for text in units.values():
        assert "PASSWORD" not in text.upper()


def test_calendar_forms() -> None:
    assert daily_calendar("18:30") == "*-*-* 18:30:00 Europe/Paris"
    assert daily_calendar(time(7, 5, 9)) == "*-*-* 07:05:09 Europe/Paris"
    assert daily_calendar("Mon..Fri *-*-* 18:00:00 Europe/Paris") == "Mon..Fri *-*-* 18:00:00 Europe/Paris"
    with pytest.raises(ConfigError):
        daily_calendar("25:00")


def test_bad_names_and_commands_are_refused(tmp_path: Path, playbook: Path) -> None:
    with pytest.raises(ConfigError):
        systemd_units(playbook, g5k=G5K, results_dir=tmp_path, on_calendar="18:30", name="../evil")
    with pytest.raises(ConfigError, match="not on PATH"):
        systemd_units(playbook, g5k="no-such-g5k-command", results_dir=tmp_path, on_calendar="18:30", name="x")


def test_specifiers_and_variables_stay_literal(tmp_path: Path) -> None:
    odd = tmp_path / "100% $HOME"
    odd.mkdir()
    (odd / "p.yaml").write_text("version: 2\n")
    units = systemd_units(odd / "p.yaml", g5k=G5K, results_dir=tmp_path, on_calendar="18:30", name="odd")
    service = parse_unit(units["odd.service"])["Service"]
    assert '"' + str(odd).replace("%", "%%").replace("$", "$$") + '/p.yaml"' in service["ExecStart"]


def test_install_and_uninstall_systemd(tmp_path: Path, playbook: Path) -> None:
    unit_dir = tmp_path / "systemd" / "user"
    units = systemd_units(playbook, g5k=G5K, results_dir=tmp_path / "r", on_calendar="18:30", name="statx")
    paths = install_systemd(units, unit_dir)
    assert sorted(p.name for p in paths) == ["statx.service", "statx.timer"]
    for path in paths:
        assert path.read_text() == units[path.name]
    assert not list(unit_dir.glob(".*.tmp"))  # the atomic writes left nothing behind
    assert systemd_enable_commands("statx")[0] == (
        "systemctl --user daemon-reload && systemctl --user enable --now statx.timer"
    )
    assert uninstall_systemd("statx", unit_dir) == paths
    assert uninstall_systemd("statx", unit_dir) == []
    with pytest.raises(ConfigError):
        install_systemd({"../x.service": ""}, unit_dir)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (systemd)")
def test_systemd_analyze_verifies_the_units(tmp_path: Path, playbook: Path) -> None:
    unit_dir = tmp_path / "units"
    units = systemd_units(playbook, g5k=G5K, results_dir=tmp_path / "r", on_calendar="18:30", name="g5k-nightly")
    paths = install_systemd(units, unit_dir)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    # --user needs a runtime directory even for an offline check; none exists without a login session.
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--user", "--man=no", *map(str, paths)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    # Unknown keys or bad values are only warnings: any line naming our files is one.
    assert not [line for line in proc.stderr.splitlines() if str(unit_dir) in line or "g5k-nightly" in line]
    calendar = subprocess.run(
        ["systemd-analyze", "calendar", "*-*-* 18:30:00 Europe/Paris"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert calendar.returncode == 0, calendar.stderr


@pytest.fixture
def fake_crontab(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in ``crontab`` keeping its table in a file: ``-l`` prints it (or fails like cron), ``-`` replaces it."""
    table = tmp_path / "table"
    script = tmp_path / "crontab"
    script.write_text(
        "#!/bin/sh\n"
        f"TABLE={shlex.quote(str(table))}\n"
        'case "$1" in\n'
        '  -l) if [ -f "$TABLE" ]; then cat "$TABLE"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;\n'
        '  -) cat > "$TABLE" ;;\n'
        '  *) echo "usage" >&2; exit 2 ;;\n'
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, table


def test_crontab_line(tmp_path: Path, playbook: Path) -> None:
    line = crontab_line(playbook, g5k=G5K, results_dir=tmp_path / "r", name="statx", at=time(18, 30))
    assert "\n" not in line
    assert line.startswith("30 * * * * ")
    assert line.endswith(" # g5kdeploy nightly statx")
    assert 'TZ=Europe/Paris date +\\%H)" = 18 ]' in line
    assert f"nightly run {shlex.quote(str(playbook))} >>" in line


def test_crontab_command_runs_in_a_shell(tmp_path: Path, playbook: Path) -> None:
    # What cron would run: the command part with \% turned back into %, through /bin/sh. The g5k stand-in
    # records its arguments, so quoting of a path with a space is checked for real.
    g5k = tmp_path / "g5k"
    g5k.write_text('#!/bin/sh\nprintf "%s\\n" "$PWD" "$@" > "$(dirname "$0")/args"\n')
    g5k.chmod(0o755)
    paris_hour = subprocess.run(
        ["date", "+%H"], env={**os.environ, "TZ": "Europe/Paris"}, capture_output=True, text=True, check=True
    ).stdout.strip()
    line = crontab_line(playbook, g5k=g5k, results_dir=tmp_path / "r", name="t", at=time(int(paris_hour), 0))
    command = line.split(" * * * * ", 1)[1].replace("\\%", "%")
    subprocess.run(["/bin/sh", "-c", command], check=True, timeout=10)
    args = (tmp_path / "args").read_text().splitlines()
    assert args == [str(playbook.parent), "--results-dir", str(tmp_path / "r"), "nightly", "run", str(playbook)]
    assert (tmp_path / "r" / "nightly-t.cron.log").exists()


def test_install_replace_uninstall_cron(tmp_path: Path, playbook: Path, fake_crontab: tuple[Path, Path]) -> None:
    script, table = fake_crontab
    line = crontab_line(playbook, g5k=G5K, results_dir=tmp_path / "r", name="statx")
    install_cron(line, crontab=str(script))  # from no crontab at all
    assert table.read_text() == line + "\n"
    table.write_text("MAILTO=me\n0 1 * * * backup # g5kdeploy nightly statx-old\n" + line + "\n# a comment\n")
    moved = crontab_line(playbook, g5k=G5K, results_dir=tmp_path / "r", name="statx", at=time(17, 45))
    new_table = install_cron(moved, crontab=[str(script)])
    lines = table.read_text().splitlines()
    assert new_table == table.read_text()
    # Replaced, not duplicated; others (including a similar marker) kept, in order.
    assert lines == ["MAILTO=me", "0 1 * * * backup # g5kdeploy nightly statx-old", "# a comment", moved]
    assert uninstall_cron("statx", crontab=str(script)) is True
    assert table.read_text().splitlines() == lines[:3]
    assert uninstall_cron("statx", crontab=str(script)) is False


def test_cron_errors(tmp_path: Path) -> None:
    failing = tmp_path / "crontab"
    failing.write_text("#!/bin/sh\necho 'crontab: cannot open' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(G5kError, match="cannot open"):
        uninstall_cron("statx", crontab=str(failing))
    with pytest.raises(ConfigError):
        install_cron("0 18 * * * something else", crontab=str(failing))


def test_a_machine_without_crontab_is_told_so_not_shown_a_traceback(tmp_path: Path, playbook: Path) -> None:
    line = crontab_line(playbook, g5k=G5K, results_dir=tmp_path / "r", name="statx")
    missing = str(tmp_path / "no-crontab")
    with pytest.raises(G5kError, match=f"^cannot read your crontab: {re.escape(missing)} not found$"):
        install_cron(line, crontab=missing)
    with pytest.raises(G5kError, match=r"^cannot read your crontab"):
        uninstall_cron("statx", crontab=missing)


NIX = shutil.which("nix-instantiate")
NIX_ENV = {**os.environ, "NIX_CONFIG": "build-users-group =\nexperimental-features ="}


def nix(*args: str) -> str:
    assert NIX is not None
    proc = subprocess.run(
        [NIX, "--store", "dummy://", *args], check=False, env=NIX_ENV, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(NIX is None and not os.environ.get("CI"), reason="nix-instantiate is not installed (nix-bin)")
def test_nix_module_parses() -> None:
    nix("--parse", str(MODULE))


# Just enough of nixpkgs' lib to evaluate the module's config without nixpkgs.
LIB_STUB = """{
  mkEnableOption = d: { inherit d; }; mkOption = o: o; mkIf = c: v: if c then v else { };
  types = { package = "package"; str = "str"; nullOr = t: "nullOr"; };
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  escapeShellArgs = args: builtins.concatStringsSep " " (map (a: "'" + a + "'") args);
  optionalAttrs = c: a: if c then a else { };
}"""


@pytest.mark.skipif(NIX is None and not os.environ.get("CI"), reason="nix-instantiate is not installed (nix-bin)")
def test_nix_module_config() -> None:
    settings = (
        '{ enable = true; package = "/nix/store/abc-g5kdeploy"; playbook = "/home/a/p.yaml"; resultsDir = "/r";'
        ' user = "a"; onCalendar = "*-*-* 18:30:00 Europe/Paris"; randomizedDelaySec = "5min";'
        ' environmentFile = "/run/secrets/g5k.env"; }'
    )
    expr = (
        f"let m = import {MODULE} {{ lib = {LIB_STUB}; config.services.g5k-nightly = {settings}; }};"
        " in { inherit (m.config.systemd.services.g5k-nightly) serviceConfig;"
        " timer = m.config.systemd.timers.g5k-nightly; options = builtins.attrNames m.options.services.g5k-nightly; }"
    )
    result = json.loads(nix("--eval", "--strict", "--json", "-E", expr))
    service = result["serviceConfig"]
    assert (
        service["ExecStart"]
        == "'/nix/store/abc-g5kdeploy/bin/g5k' '--results-dir' '/r' 'nightly' 'run' '/home/a/p.yaml'"
    )
    assert service["Type"] == "oneshot" and service["User"] == "a" and service["WorkingDirectory"] == "/home/a"
    assert service["EnvironmentFile"] == "/run/secrets/g5k.env"
    assert result["timer"]["timerConfig"]["OnCalendar"] == "*-*-* 18:30:00 Europe/Paris"
    assert result["timer"]["timerConfig"]["Persistent"] is True
    assert result["timer"]["wantedBy"] == ["timers.target"]
    assert set(result["options"]) >= {"enable", "package", "playbook", "resultsDir", "user", "onCalendar"}
    assert "environmentFile" in result["options"]
