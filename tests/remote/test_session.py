"""fabric sessions: host keys checked, and a local port forwarded to a service on a node's address."""

from __future__ import annotations

import http.server
import threading
import urllib.request

import pytest

from g5kdeploy.remote import RemoteError
from g5kdeploy.remote.session import connect, forward_local


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from the node\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def node_http(testbed):
    """An HTTP server bound to the third node's own loopback address."""
    node = testbed.nodes[2]
    server = http.server.ThreadingHTTPServer((node.address, 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield node, server.server_address[1]
    server.shutdown()
    server.server_close()


def test_forward_local_reaches_a_service_on_the_node(testbed, node_http):
    node, port = node_http
    connection = connect(node.name, testbed.ssh_config, known_hosts=testbed.known_hosts)
    try:
        assert connection.run("echo $G5K_NODE", hide=True, in_stream=False).stdout.strip() == node.name
        with forward_local(connection, port, remote_host=node.address) as local_port:
            response = urllib.request.urlopen(f"http://127.0.0.1:{local_port}/", timeout=10)
            assert response.read() == b"hello from the node\n"
            response.close()
    finally:
        connection.close()


def test_a_shared_gateway_is_opened_once(testbed):
    gateway = connect(testbed.nodes[0].name, testbed.ssh_config, known_hosts=testbed.known_hosts)
    targets = [
        connect(n.name, testbed.ssh_config, known_hosts=testbed.known_hosts, gateway=gateway)
        for n in testbed.nodes[1:4]
    ]
    try:
        for node, target in zip(testbed.nodes[1:4], targets, strict=True):
            assert target.run("echo $G5K_NODE", hide=True, in_stream=False).stdout.strip() == node.name
    finally:
        for target in targets:
            target.close()
        gateway.close()


def test_an_unknown_host_key_is_refused(testbed, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(RemoteError, match="cannot connect"):
        connect(testbed.nodes[0].name, testbed.ssh_config, known_hosts=empty)
