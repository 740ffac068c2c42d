"""A local Grid'5000 REST API simulator that python-grid5000 can talk to unchanged."""

from g5kdeploy.simulator.app import create_app
from g5kdeploy.simulator.config import SimConfig
from g5kdeploy.simulator.faults import parse_faults
from g5kdeploy.simulator.model import Simulator
from g5kdeploy.simulator.server import SimServer, serve_in_thread

__all__ = ["SimConfig", "SimServer", "Simulator", "create_app", "parse_faults", "serve_in_thread"]
