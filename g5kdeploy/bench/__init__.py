"""Bench: the playbook's parameter sweep on every benched node, resumable, one result file per run."""
