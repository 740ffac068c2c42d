"""Remote execution on nodes over SSH: the only package that imports execo or fabric.

:class:`SshRunner` runs commands and moves files on many nodes at once (execo, OpenSSH multiplexing);
:mod:`g5kdeploy.remote.session` gives an interactive fabric connection, for port forwarding.
"""

from __future__ import annotations

from g5kdeploy.errors import RemoteError
from g5kdeploy.remote.results import CommandResult, TransferResult
from g5kdeploy.remote.ssh import SshRunner

__all__ = ["CommandResult", "RemoteError", "SshRunner", "TransferResult"]
