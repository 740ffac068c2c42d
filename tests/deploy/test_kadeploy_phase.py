"""The deploy phase with method kadeploy, end to end: ``run_deploy`` against the real simulator over HTTP
(python-grid5000), with real loopback sshd nodes named as the job's nodes for the verification probe.

Loopback nodes share this machine's kernel and cannot reboot, so the node side is played by stand-ins:

* each node's ``/proc`` is a directory in its working directory, which the probe reads through ``G5K_PROC``;
* the reboot: when the simulator reports a deployment ``terminated``, every node it reports ``OK`` gets a new
  boot id (``StandinRebootApi``, before ``KadeployMethod.boot`` returns, so the probe never races it);
* ebpf_exporter: one tiny HTTP server on 127.0.0.1:9435, which every loopback node reaches as its own.

Every deployment is a real POST to the simulator, polled and cancelled through the real API; the simulator's
seed makes its KO draws repeatable.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from g5kdeploy.clock import Clock
from g5kdeploy.credentials import Endpoint
from g5kdeploy.deploy.base import EXPORTER_PORT
from g5kdeploy.deploy.phase import DeploySummary, run_deploy
from g5kdeploy.errors import DeployError
from g5kdeploy.results import NodeAccess, RunRecord, RunStore
from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.simulator.server import SimServer
from g5kdeploy.testbeds import base as testbeds
from g5kdeploy.testbeds.api import Api
from g5kdeploy.testbeds.loopback import LoopbackNodes, start_nodes, stop_nodes
from g5kdeploy.tools.kernel import kernel_options
from tests.deploy.common import KEY, deploy_job

ENVIRONMENT = "http://public.nancy.grid5000.fr/~jdoe/statx.yaml"
# 600 simulated seconds a real one: a 300 s deployment takes 0.5 s, a 10 s poll 17 ms.
SPEED = 600.0
DEPLOY_SECONDS = 300.0
#: Relative, so each node resolves it in its own working directory (its sshd exports G5K_NODE_DIR).
PROC = "standin-proc"
OSRELEASE = "6.12.30"
METRICS = (
    "# TYPE ebpf_exporter_enabled_configs gauge\n"
    'ebpf_exporter_enabled_configs{name="statx-override"} 1\n'
    "# TYPE ebpf_exporter_ebpf_program_attached gauge\n"
    'ebpf_exporter_ebpf_program_attached{config="statx-override",id="42",program="statx_override",tag="0"} 1\n'
)


# Stand-ins -----------------------------------------------------------------------------------------------


def new_boot_id(proc: Path) -> str:
    boot_id = str(uuid.uuid4())
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text(boot_id + "\n")
    return boot_id


def make_standin_proc(proc: Path) -> None:
    """A stand-in /proc with what the Kadeploy expectation checks: a boot id, and every kernel option."""
    (proc / "sys" / "kernel" / "random").mkdir(parents=True)
    new_boot_id(proc)
    (proc / "cmdline").write_text("BOOT_IMAGE=/boot/bzImage root=/dev/sda3 console=ttyS0,115200\n")
    (proc / "sys" / "kernel" / "osrelease").write_text(OSRELEASE + "\n")
    config = "".join(f"CONFIG_{name}={value}\n" for name, value in kernel_options().items())
    (proc / "config.gz").write_bytes(gzip.compress(("# CONFIG_EXPERT is not set\n" + config).encode()))


class StandinRebootApi(Api):
    """The simulator's API, plus a stand-in for the reboot Kadeploy causes, since loopback nodes cannot reboot.

    When a deployment is first seen ``terminated``, each node it reports ``OK`` gets a new boot id in its
    stand-in /proc, except the nodes in ``stays_up`` (a node Kadeploy reports OK that did not really reboot).
    All HTTP still goes to the simulator.
    """

    def __init__(self, endpoint: Endpoint, procs: dict[str, Path]) -> None:
        super().__init__(endpoint, attempts=2, retry_wait_max=0.1)
        self.procs = procs
        self.stays_up: set[str] = set()
        self.rebooted: list[str] = []
        self._seen: set[str] = set()

    def get_deployment(self, site: str, uid: str) -> dict[str, Any]:
        deployment = super().get_deployment(site, uid)
        if deployment.get("status") == "terminated" and uid not in self._seen:
            self._seen.add(uid)
            for node, entry in sorted((deployment.get("result") or {}).items()):
                if entry.get("state") == "OK" and node not in self.stays_up:
                    new_boot_id(self.procs[node])
                    self.rebooted.append(node)
        return deployment


class StandinNodeAccess(NodeAccess):
    """The loopback nodes' access; every command on them reads the stand-in /proc."""

    def workdir_env(self, nodes: list[str]) -> dict[str, str] | None:
        return {**(super().workdir_env(nodes) or {}), "G5K_PROC": PROC}


@dataclass
class StandinTestbed:
    """A stand-in Grid'5000 testbed with what the deploy phase uses: the API, node access and the API's clock."""

    api: Api
    clock: Clock
    loop: LoopbackNodes
    usage_policy: bool = False

    def open(self, record: RunRecord, store: RunStore) -> Api:
        return self.api

    def access(self, record: RunRecord, store: RunStore) -> NodeAccess:
        return StandinNodeAccess(
            ssh_config=str(self.loop.ssh_config),
            workdirs={node.name: str(node.workdir) for node in self.loop.nodes},
            known_hosts=str(self.loop.known_hosts),
        )

    def experiment_kernel(self, record: RunRecord) -> None:  # Grid'5000's nodes boot Nix's kernel
        return None

    def ebpf_nodes(self, record: RunRecord) -> list[str]:
        return []


class StandinExporterHandler(BaseHTTPRequestHandler):
    """A stand-in ebpf_exporter's /metrics: our program enabled and attached."""

    def do_GET(self) -> None:
        body = METRICS.encode() if self.path == "/metrics" else b"not found\n"
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        return None


# Fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin_exporter() -> Iterator[str]:
    """A stand-in ebpf_exporter on 127.0.0.1:9435: all loopback nodes share 127.0.0.1, so one serves them all."""
    if not (shutil.which("curl") or shutil.which("wget")):
        pytest.skip("the probe fetches the exporter's metrics with curl or wget; neither is installed")
    try:
        server = ThreadingHTTPServer(("127.0.0.1", EXPORTER_PORT), StandinExporterHandler)
    except OSError as exc:
        pytest.skip(
            f"127.0.0.1:{EXPORTER_PORT} is taken ({exc}): a real ebpf_exporter or another test holds the port "
            "the verification probe reads, so the stand-in exporter cannot answer there"
        )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{EXPORTER_PORT}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Bed:
    server: SimServer
    api: StandinRebootApi
    testbed: StandinTestbed
    nodes: list[str]
    procs: dict[str, Path]
    store: RunStore
    key_file: Path

    def record(self, **deploy: Any) -> RunRecord:
        """A run on the job's nodes whose playbook deploys with kadeploy; ``deploy`` overrides its fields."""
        playbook = {
            "version": 2,
            "name": "exp",
            "testbed": "grid5000",
            "reservation": {
                "site": "nancy",
                "roles": {"exporter": {"nodes": 3, "cluster": self.nodes[0].split("-")[0]}},
                "walltime": "1:00",
            },
            # The key is the test's, so nothing reads ~/.ssh.
            "ssh": {"key": str(self.key_file)},
            # A minute of wall clock at speed 600: the SSH probes around the deployments take wall seconds, and
            # on a loaded machine a tighter budget would run out before Kadeploy's 300 s even start.
            "deploy": {"method": "kadeploy", "environment": ENVIRONMENT, "retries": 1, "timeout": 36000, **deploy},
        }
        record = RunRecord(
            run_id="exp-test",
            playbook_path="exp.yaml",
            playbook=playbook,
            testbed="grid5000",
            api_url=self.server.url,
            roles={"exporter": list(self.nodes)},
        )
        self.store.create(record)
        return record

    def run(self, record: RunRecord) -> DeploySummary:
        return run_deploy(record, self.store, cast(testbeds.Testbed, self.testbed))

    def deployments(self) -> list[dict[str, Any]]:
        """Every deployment the simulator received, oldest first."""
        found, _total = self.server.simulator.list_deployments("nancy", {}, 0, 50)
        return sorted(found, key=lambda deployment: deployment["created_at"])

    def boot_id(self, node: str) -> str:
        return (self.procs[node] / "sys" / "kernel" / "random" / "boot_id").read_text().strip()


@pytest.fixture
def bed(request: pytest.FixtureRequest, tmp_path: Path, standin_exporter: str) -> Iterator[Bed]:
    """A simulator (SimConfig overrides from the test's parameter), a running 3-node deploy job, loopback
    nodes under the job's node names, each with its stand-in /proc."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    config = SimConfig(
        **{"speed": SPEED, "launch_seconds": 1.0, "deploy_seconds": DEPLOY_SECONDS, "seed": 11, **overrides}
    )
    key_file = tmp_path / "id_ed25519"
    key_file.write_text("not a real key: only its public half is sent\n")
    key_file.with_name("id_ed25519.pub").write_text(KEY + "\n")
    with serve_in_thread(config) as server:
        clock = server.simulator.clock
        plain = Api(Endpoint(server.url, username="jdoe", password="pw"), attempts=2, retry_wait_max=0.1)
        nodes = deploy_job(plain, clock, types=["deploy"])
        loop = start_nodes(tmp_path / "loop", nodes)
        try:
            procs = {node.name: node.workdir / PROC for node in loop.nodes}
            for proc in procs.values():
                make_standin_proc(proc)
            api = StandinRebootApi(Endpoint(server.url, username="jdoe", password="pw"), procs)
            yield Bed(
                server=server,
                api=api,
                testbed=StandinTestbed(api=api, clock=clock, loop=loop),
                nodes=nodes,
                procs=procs,
                store=RunStore(tmp_path / "results"),
                key_file=key_file,
            )
        finally:
            stop_nodes(node.pid for node in loop.nodes)


# Tests ---------------------------------------------------------------------------------------------------


def test_all_nodes_ok_are_verified_after_one_deployment(bed: Bed) -> None:
    before = {node: bed.boot_id(node) for node in bed.nodes}
    record = bed.record()
    summary = bed.run(record)

    assert summary.verified == bed.nodes
    assert summary.dropped == {}
    saved = bed.store.load(record.run_id)
    assert saved.phases["deploy"].state == "done"
    assert saved.deploy is not None and saved.deploy.method == "kadeploy"
    for node in bed.nodes:
        state = saved.deploy.nodes[node]
        assert (state.state, state.reason, state.attempts) == ("verified", None, 1), node
        # The probe read the stand-in, not this machine's /proc: the new boot id and the stand-in's kernel.
        assert state.facts.boot_id == bed.boot_id(node) != before[node]
        assert state.facts.kernel == OSRELEASE
        assert any(metric.startswith("ebpf_exporter_ebpf_program_attached") for metric in state.facts.metrics)
    assert saved.ebpf_toggle is not None and saved.provided == []

    deployments = bed.deployments()
    assert len(deployments) == 1
    assert sorted(deployments[0]["nodes"]) == bed.nodes
    assert deployments[0]["status"] == "terminated"
    assert deployments[0]["environment"] == ENVIRONMENT
    # The ledger names the deployment of every node, for the report and the manifest.
    assert saved.deploy.deployments == [f"nancy/{deployments[0]['uid']}"]
    # The playbook's key went out, not one from ~/.ssh.
    assert deployments[0]["key"].endswith(hashlib.sha1(KEY.encode()).hexdigest())


# With seed 15, the first deployment's draws at ko_rate 0.5 make two of the three nodes KO, the second's none.
@pytest.mark.parametrize("bed", [{"seed": 15, "deploy_ko_rate": 0.5}], indirect=True)
def test_ko_nodes_alone_are_redeployed_and_end_verified(bed: Bed) -> None:
    record = bed.record(retries=2)
    summary = bed.run(record)

    deployments = bed.deployments()
    assert len(deployments) == 2, [d["nodes"] for d in deployments]
    first, second = deployments
    ko = sorted(node for node, entry in first["result"].items() if entry["state"] == "KO")
    assert 0 < len(ko) < len(bed.nodes), f"seed 15 should mix OK and KO nodes: {first['result']}"
    assert sorted(second["nodes"]) == ko
    assert all(entry["state"] == "OK" for entry in second["result"].values())

    assert summary.verified == bed.nodes
    assert summary.dropped == {}
    ledger = bed.store.load(record.run_id).deploy
    assert ledger is not None
    for node in bed.nodes:
        state = ledger.nodes[node]
        assert (state.state, state.reason, state.attempts) == ("verified", None, 2 if node in ko else 1), node


@pytest.mark.parametrize("bed", [{"deploy_error_rate": 1.0}], indirect=True)
def test_error_deployments_exhaust_the_retries_and_fail_naming_every_node(bed: Bed) -> None:
    record = bed.record(retries=1)
    with pytest.raises(DeployError) as caught:
        bed.run(record)

    message = str(caught.value)
    assert "exporter: 0 of 3 verified, min_nodes 3" in message
    deployments = bed.deployments()
    assert [d["status"] for d in deployments] == ["error", "error"]
    assert all(sorted(d["nodes"]) == bed.nodes for d in deployments)
    saved = bed.store.load(record.run_id)
    assert saved.phases["deploy"].state == "failed"
    assert saved.deploy is not None
    for node in bed.nodes:
        state = saved.deploy.nodes[node]
        # The reason is the last round's: the second deployment's.
        reason = f"deployment {deployments[1]['uid']} on nancy ended with status error"
        assert (state.state, state.reason, state.attempts) == ("failed", reason, 2), node
        assert f"  {node}: {reason}" in message
    assert bed.api.rebooted == []


@pytest.mark.parametrize("bed", [{"deploy_seconds": 36_000.0}], indirect=True)
def test_deployment_past_the_timeout_is_canceled_and_not_retried(bed: Bed) -> None:
    # 600 simulated seconds is 1 s here; the deployment would take 60 s.
    record = bed.record(retries=2, timeout=600)
    with pytest.raises(DeployError) as caught:
        bed.run(record)

    deployments = bed.deployments()
    # The phase's deadline passed during the first round: no second deployment.
    assert [d["status"] for d in deployments] == ["canceled"]
    saved = bed.store.load(record.run_id)
    assert saved.deploy is not None
    for node in bed.nodes:
        state = saved.deploy.nodes[node]
        assert (state.state, state.attempts) == ("failed", 1), node
        assert state.reason is not None
        assert state.reason.startswith(f"deployment {deployments[0]['uid']} on nancy still processing after ")
        assert state.reason.endswith(" s (canceled)")
        assert f"  {node}: deployment" in str(caught.value)


def test_node_reported_ok_that_did_not_reboot_fails_verification_and_is_dropped(bed: Bed) -> None:
    stuck = bed.nodes[1]
    bed.api.stays_up.add(stuck)
    record = bed.record(retries=1, min_nodes=2)
    summary = bed.run(record)

    reason = "boot id unchanged: the node did not reboot"
    assert summary.verified == [node for node in bed.nodes if node != stuck]
    assert summary.dropped == {stuck: reason}
    # Kadeploy said OK both times; only the probe saw that the node stayed on its old system.
    deployments = bed.deployments()
    assert [sorted(d["nodes"]) for d in deployments] == [bed.nodes, [stuck]]
    assert all(entry["state"] == "OK" for d in deployments for entry in d["result"].values())
    saved = bed.store.load(record.run_id)
    assert saved.deploy is not None
    assert (saved.deploy.nodes[stuck].state, saved.deploy.nodes[stuck].reason) == ("dropped", reason)
    assert saved.deploy.nodes[stuck].attempts == 2
    for node in summary.verified:
        assert (saved.deploy.nodes[node].state, saved.deploy.nodes[node].attempts) == ("verified", 1)
    assert saved.roles["exporter"] == summary.verified
