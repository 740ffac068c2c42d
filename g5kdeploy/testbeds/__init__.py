"""Where experiments run: :class:`Grid5000Testbed` or :class:`LocalTestbed`, chosen by the playbook."""

from __future__ import annotations

from g5kdeploy.errors import ConfigError
from g5kdeploy.testbeds.base import Testbed
from g5kdeploy.testbeds.grid5000 import Grid5000Testbed
from g5kdeploy.testbeds.local import LocalTestbed

__all__ = ["Grid5000Testbed", "LocalTestbed", "Testbed", "testbed_for"]


def testbed_for(kind: str) -> Testbed:
    match kind:
        case "grid5000":
            return Grid5000Testbed()
        case "local":
            return LocalTestbed()
    raise ConfigError(f"unknown testbed {kind!r}", hint="use testbed: grid5000 or testbed: local")
