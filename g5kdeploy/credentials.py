"""Where the API is and who we are to it.

The URL comes from ``G5K_API_URL``, else ``uri`` in python-grid5000's own ``~/.python-grid5000.yaml``,
else the public API. The login and password come from ``G5K_USERNAME``/``G5K_PASSWORD``, else the same
file. Unlike python-grid5000, which silently falls back to anonymous access, a missing, broken or
world-readable file is an error whenever credentials are needed. On a Grid'5000 frontend or node the
platform identifies us and no credentials are needed.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from g5kdeploy.errors import CredentialsError
from g5kdeploy.log import register_secret

DEFAULT_API_URL = "https://api.grid5000.fr/stable"
CONFIG_NAME = ".python-grid5000.yaml"
_FILE_KEYS = {"username", "password", "uri", "verify_ssl", "timeout"}


@dataclass(frozen=True)
class Endpoint:
    """An API base URL and the identity to use there. ``password`` never shows in ``repr``."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_ssl: bool | str | None = None

    @property
    def authenticated(self) -> bool:
        return bool(self.username and self.password)


def inside_grid5000(fqdn: str | None = None) -> bool:
    """True on a frontend or node, where the API knows who we are without a password."""
    return (fqdn or socket.getfqdn()).endswith(".grid5000.fr")


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("HOME", str(Path.home()))) / CONFIG_NAME


def resolve_endpoint(
    *, env: Mapping[str, str] | None = None, need_credentials: bool = True, fqdn: str | None = None
) -> Endpoint:
    """The endpoint for the real platform (or a simulator named by ``G5K_API_URL``)."""
    env = os.environ if env is None else env
    path = config_path(env)
    from_env_user, from_env_password = env.get("G5K_USERNAME"), env.get("G5K_PASSWORD")
    file_values: dict[str, object] = {}
    env_complete = bool(from_env_user and from_env_password)
    needs_file = need_credentials and not env_complete and not inside_grid5000(fqdn)
    if path.exists() or needs_file:
        file_values = _read_config(path, required=needs_file)
    url = env.get("G5K_API_URL") or str(file_values.get("uri") or DEFAULT_API_URL)
    username = from_env_user or _text(file_values.get("username"))
    password = from_env_password or _text(file_values.get("password"))
    register_secret(password)
    if need_credentials and not (username and password) and not inside_grid5000(fqdn):
        missing = "password" if username else "login and password"
        raise CredentialsError(
            f"no Grid'5000 {missing}: the API needs credentials from outside Grid'5000",
            hint=f"set G5K_USERNAME and G5K_PASSWORD, or write username and password in {path} (chmod 600)",
        )
    verify = file_values.get("verify_ssl")
    return Endpoint(
        url=url.rstrip("/"),
        username=username,
        password=password,
        verify_ssl=verify if isinstance(verify, bool | str) else None,
    )


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _read_config(path: Path, *, required: bool) -> dict[str, object]:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if required:
            raise CredentialsError(
                f"{path} does not exist and G5K_USERNAME/G5K_PASSWORD are not set",
                hint=f"create {path} with 'username: LOGIN' and 'password: ...', then chmod 600 {path}",
            ) from None
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            f"{path} is readable by other users (mode {stat.filemode(mode)}); it holds your password",
            hint=f"run: chmod 600 {path}",
        )
    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CredentialsError(
            f"{path} cannot be read as YAML ({type(exc).__name__})",
            hint="it must be a mapping such as 'username: LOGIN' and 'password: ...' on two lines",
        ) from None
    if not isinstance(values, dict):
        raise CredentialsError(
            f"{path} is {'empty' if values is None else 'not a mapping'}",
            hint="write 'username: LOGIN' and 'password: ...' in it (python-grid5000's grid5000-auth "
            "leaves it empty when it crashes)",
        )
    unknown = sorted(set(values) - _FILE_KEYS)
    if unknown:
        raise CredentialsError(
            f"{path}: unknown keys {', '.join(map(str, unknown))}",
            hint=f"python-grid5000 reads only {', '.join(sorted(_FILE_KEYS))}",
        )
    return values
