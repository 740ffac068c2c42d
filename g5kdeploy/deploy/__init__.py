"""Getting the experiment's system onto the nodes, and proving it is there.

A :class:`~g5kdeploy.deploy.base.DeployMethod` boots (or installs on) a set of nodes; the deploy phase
(:mod:`g5kdeploy.deploy.phase`) retries, verifies and drops nodes around it. Methods: ``artifacts`` (local
testbed: compiled files pushed with checksums), ``kadeploy`` (Grid'5000 REST deployments API) and ``nxc``
(NixOS-Compose closure from a binary cache, booted by a bounded parallel kexec).
"""
