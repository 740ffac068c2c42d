"""Starting ``g5k nightly run`` every evening: a systemd user timer, or a crontab line where there is no systemd.

The trigger fires before the night (18:30 Paris time by default) so that the run can submit an advance
reservation for the slot ``schedule.next_slot`` picks (19:05 by default). Credentials never go into a unit or
a crontab: the agent reads them where it always does (``~/.python-grid5000.yaml``, or ``G5K_USERNAME``/
``G5K_PASSWORD`` from an environment file the user keeps, mode 0600).
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Sequence
from datetime import time
from pathlib import Path

from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.files import atomic_write_text
from g5kdeploy.process import run

DEFAULT_NAME = "g5k-nightly"
DEFAULT_AT = time(18, 30)
DEFAULT_ON_CALENDAR = "*-*-* 18:30:00 Europe/Paris"
DEFAULT_UNIT_DIR = Path("~/.config/systemd/user")
# Optional ("-" prefix): the user's own file for G5K_* variables, read by systemd at start, never copied here.
DEFAULT_ENVIRONMENT_FILE = "%h/.config/g5kdeploy/nightly.env"
MARKER = "# g5kdeploy nightly"
CRONTAB_TIMEOUT = 30.0

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HH_MM = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def _check_name(name: str) -> str:
    # The name becomes a unit file name and a crontab marker: keep it to characters both take verbatim.
    if not _NAME.match(name):
        raise ConfigError(f"{name!r} is not a valid nightly name", hint="use letters, digits, '-', '_' or '.'")
    return name


def _executable(g5k: str | Path) -> Path:
    # systemd and cron run with a bare PATH: the command must be an absolute path that exists now.
    path = Path(g5k).expanduser()
    if not path.is_absolute():
        found = shutil.which(str(g5k))
        if found is None:
            raise ConfigError(f"{g5k} is not on PATH", hint="give the absolute path of the g5k command")
        path = Path(found)
    return path.resolve()


def daily_calendar(at: str | time = DEFAULT_AT, timezone: str = "Europe/Paris") -> str:
    """A daily ``OnCalendar=`` value; ``"18:30"`` becomes ``*-*-* 18:30:00 Europe/Paris``, full specs pass through."""
    if isinstance(at, time):
        return f"*-*-* {at:%H:%M:%S} {timezone}"
    match = _HH_MM.match(at.strip())
    if not match:
        return at.strip()
    hours, minutes, seconds = int(match[1]), int(match[2]), int(match[3] or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ConfigError(f"{at!r} is not a time of day")
    return f"*-*-* {hours:02d}:{minutes:02d}:{seconds:02d} {timezone}"


def _systemd_word(word: str) -> str:
    """One ExecStart= argument: specifiers (%) and variables ($) literal, quoted if it holds spaces or quotes."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if escaped and not re.search(r"[\s\"'\\;]", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _command(g5k: Path, results_dir: Path, playbook: Path) -> list[str]:
    return [str(g5k), "--results-dir", str(results_dir), "nightly", "run", str(playbook)]


def systemd_units(
    playbook_path: Path,
    *,
    g5k: str | Path,
    results_dir: Path,
    on_calendar: str = DEFAULT_ON_CALENDAR,
    name: str = DEFAULT_NAME,
    environment_file: str | None = DEFAULT_ENVIRONMENT_FILE,
    randomized_delay: str = "5min",
) -> dict[str, str]:
    """The user service and timer, as ``{"<name>.service": text, "<name>.timer": text}``."""
    _check_name(name)
    playbook = Path(playbook_path).expanduser().resolve()
    results = Path(results_dir).expanduser().resolve()
    command = " ".join(_systemd_word(word) for word in _command(_executable(g5k), results, playbook))
    calendar = daily_calendar(on_calendar)
    service = [
        "[Unit]",
        f"Description=g5kdeploy nightly run of {playbook.name.replace('%', '%%')}",
        "",
        "[Service]",
        # One run to completion per trigger; oneshot has no start timeout, and a weekend run lasts days.
        "Type=oneshot",
        f"WorkingDirectory={str(playbook.parent).replace('%', '%%')}",
        f"ExecStart={command}",
    ]
    if environment_file:
        service.append(f"EnvironmentFile=-{environment_file}")
    service += [
        # Logs go to the journal unbuffered, so a run stuck on the API shows where it is.
        "Environment=PYTHONUNBUFFERED=1",
        # SIGINT is what the agent handles as Ctrl-C: it releases the run's jobs before exiting.
        "KillSignal=SIGINT",
        "TimeoutStopSec=5min",
        "",
    ]
    timer = [
        "[Unit]",
        f"Description=start {name}.service before the Grid'5000 night",
        "",
        "[Timer]",
        f"OnCalendar={calendar}",
        # A machine that was off (or asleep) at the trigger runs it at boot; the run then picks the next slot.
        "Persistent=true",
        # Spread users' agents a little so they do not all hit the API in the same second.
        f"RandomizedDelaySec={randomized_delay}",
        "AccuracySec=1min",
        f"Unit={name}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ]
    return {f"{name}.service": "\n".join(service), f"{name}.timer": "\n".join(timer)}


def install_systemd(units: dict[str, str], unit_dir: Path = DEFAULT_UNIT_DIR) -> list[Path]:
    """Writes the units (each atomically) and returns their paths; see ``systemd_enable_commands``."""
    directory = Path(unit_dir).expanduser()
    paths = []
    for filename, text in units.items():
        if "/" in filename or not filename.endswith((".service", ".timer")):
            raise ConfigError(f"{filename!r} is not a unit file name")
        path = directory / filename
        atomic_write_text(path, text)
        paths.append(path)
    return paths


def systemd_enable_commands(name: str = DEFAULT_NAME) -> list[str]:
    """What the user runs after ``install_systemd``; lingering keeps user timers alive when logged out."""
    return [
        f"systemctl --user daemon-reload && systemctl --user enable --now {_check_name(name)}.timer",
        "loginctl enable-linger",
    ]


def systemd_disable_commands(name: str = DEFAULT_NAME) -> list[str]:
    return [f"systemctl --user disable --now {_check_name(name)}.timer", "systemctl --user daemon-reload"]


def uninstall_systemd(name: str = DEFAULT_NAME, unit_dir: Path = DEFAULT_UNIT_DIR) -> list[Path]:
    """Removes the service and timer files and returns the ones that existed."""
    directory = Path(unit_dir).expanduser()
    removed = []
    for suffix in (".service", ".timer"):
        path = directory / f"{_check_name(name)}{suffix}"
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def _marker(name: str) -> str:
    return f"{MARKER} {_check_name(name)}"


def _has_marker(line: str, name: str) -> bool:
    return re.search(rf"(^|\s){re.escape(_marker(name))}\s*$", line) is not None


def crontab_line(
    playbook_path: Path,
    *,
    g5k: str | Path,
    results_dir: Path,
    name: str = DEFAULT_NAME,
    at: time = DEFAULT_AT,
) -> str:
    """One crontab line that runs the nightly at ``at`` Paris time, whatever the machine's timezone.

    ``CRON_TZ`` is a cronie extension other crons ignore, and a ``CRON_TZ=`` line changes every entry below it. So the
    line fires at ``at``'s minute every hour, local time, and goes on only when the hour in Paris is
    ``at``'s (``TZ=Europe/Paris date``): right across DST and on machines kept in UTC. It ends with the marker
    comment that ``install_cron``/``uninstall_cron`` look for (the shell ignores it).
    """
    results = Path(results_dir).expanduser().resolve()
    playbook = Path(playbook_path).expanduser().resolve()
    command = shlex.join(_command(_executable(g5k), results, playbook))
    log = shlex.quote(str(results / f"nightly-{_check_name(name)}.cron.log"))
    script = (
        f'[ "$(TZ=Europe/Paris date +%H)" = {at:%H} ] && cd {shlex.quote(str(playbook.parent))} && '
        f"mkdir -p {shlex.quote(str(results))} && {command} >>{log} 2>&1"
    )
    # cron turns an unescaped % into a newline.
    return f"{at.minute} * * * * {script.replace('%', chr(92) + '%')} {_marker(name)}"


def _crontab(crontab: str | Sequence[str]) -> list[str]:
    return shlex.split(crontab) if isinstance(crontab, str) else list(crontab)


def _read_crontab(crontab: str | Sequence[str], timeout: float) -> list[str]:
    proc = run([*_crontab(crontab), "-l"], timeout=timeout, what="read your crontab", check=False)
    if proc.returncode != 0:
        # "no crontab for <user>" (cron, cronie, busybox alike) is an empty table, not an error.
        if "no crontab" in proc.stderr.lower():
            return []
        raise G5kError(f"crontab -l failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.splitlines()


def _write_crontab(crontab: str | Sequence[str], lines: list[str], timeout: float) -> None:
    text = "".join(f"{line}\n" for line in lines)
    proc = run([*_crontab(crontab), "-"], timeout=timeout, what="write your crontab", input=text, check=False)
    if proc.returncode != 0:
        raise G5kError(f"crontab - failed ({proc.returncode}): {proc.stderr.strip()}")


def install_cron(line: str, *, crontab: str | Sequence[str] = "crontab", timeout: float = CRONTAB_TIMEOUT) -> str:
    """Puts ``line`` in the user's crontab in place of any line with the same marker; returns the new table."""
    match = re.search(rf"{re.escape(MARKER)} (\S+)\s*$", line)
    if not match or "\n" in line.strip():
        raise ConfigError("not a g5kdeploy nightly crontab line", hint="make it with crontab_line()")
    name = match[1]
    kept = [existing for existing in _read_crontab(crontab, timeout) if not _has_marker(existing, name)]
    lines = [*kept, line.strip()]
    _write_crontab(crontab, lines, timeout)
    return "".join(f"{entry}\n" for entry in lines)


def uninstall_cron(
    name: str = DEFAULT_NAME, *, crontab: str | Sequence[str] = "crontab", timeout: float = CRONTAB_TIMEOUT
) -> bool:
    """Removes the line with ``name``'s marker; False (and nothing written) if there was none."""
    lines = _read_crontab(crontab, timeout)
    kept = [line for line in lines if not _has_marker(line, name)]
    if len(kept) == len(lines):
        return False
    _write_crontab(crontab, kept, timeout)
    return True
