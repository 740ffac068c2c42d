"""Clients and helpers for the external tools the agent drives (Prometheus, ...)."""
