"""Structured logs on stderr: a readable console by default, JSON lines with ``--log-json``.

Secrets registered with :func:`register_secret` are masked in every event before any renderer sees
them, so a password can reach neither the terminal nor a log file, whatever a library puts into a
message.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

MASK = "***"
_secrets: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Mask ``secret`` in every later log event and in :func:`redact`."""
    if secret:
        _secrets.add(secret)


def is_secret(value: str) -> bool:
    """Whether ``value`` is a registered secret, or contains one."""
    return any(secret in value for secret in _secrets)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    if isinstance(value, BaseException):
        return redact(str(value))
    return value


def _mask_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {key: _redact_value(value) for key, value in event.items()}


def _format_exception_masked(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if "exception" in event:
        event["exception"] = redact(event["exception"])
    return event


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at the time of writing (test runners swap it between commands)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(*, json_lines: bool = False, verbose: int = 0) -> None:
    """Set up structlog once per process: level from ``verbose``, renderer from ``json_lines``."""
    level = logging.DEBUG if verbose > 0 else logging.INFO
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    if json_lines:
        processors += [
            structlog.processors.format_exc_info,
            _format_exception_masked,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
