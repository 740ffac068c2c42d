"""Where experiments run: :class:`Grid5000Testbed`, :class:`LocalTestbed` or :class:`VmTestbed`, per the playbook."""

from __future__ import annotations

from g5kdeploy.errors import ConfigError
from g5kdeploy.testbeds.base import Testbed
from g5kdeploy.testbeds.grid5000 import Grid5000Testbed
from g5kdeploy.testbeds.local import LocalTestbed
from g5kdeploy.testbeds.vm import VmTestbed

__all__ = ["Grid5000Testbed", "LocalTestbed", "Testbed", "VmTestbed", "testbed_for"]


def testbed_for(kind: str) -> Testbed:
    match kind:
        case "grid5000":
            return Grid5000Testbed()
        case "local":
            return LocalTestbed()
        case "vm":
            return VmTestbed()
    raise ConfigError(f"unknown testbed {kind!r}", hint="use testbed: grid5000, local or vm")
