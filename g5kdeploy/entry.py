"""The ``g5k`` program's entry point: signals are handled before the (slow) import of the CLI begins."""

from __future__ import annotations

from g5kdeploy.signals import exit_at_once_on_signal


def main() -> None:
    exit_at_once_on_signal()
    from g5kdeploy.cli import main as cli_main

    cli_main()
