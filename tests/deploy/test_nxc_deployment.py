"""The deployment descriptor the agent makes for nxc's initrd, checked against what nxc 0.7.11 writes."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from g5kdeploy.deploy import nxc_deployment
from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.tools import kadeploy_image, nxc

COLLECTOR = "/nix/store/dddddddddddddddddddddddddddddddd-nixos-system-collector"
EXPORTER = "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-nixos-system-exporter"
INFO = {
    "flavour": {"name": "g5k-image"},
    "system": "x86_64-linux",
    "compositions_info_path": "/nix/store/gggggggggggggggggggggggggggggggg-compositions-info.json",
    "all": {"kernel": "/nix/store/k/bzImage", "initrd": "/nix/store/i/initrd", "image": "/nix/store/x-nixos.tar.xz"},
    "compositions_info": {"composition": {"roles": {"collector": COLLECTOR, "exporter": EXPORTER}}},
}
ROLES = {"exporter": ["gros-3", "gros-1"], "collector": ["gros-7"]}
IPS = {"gros-1": "172.16.64.1", "gros-3": "172.16.64.3", "gros-7": "172.16.64.7"}


def placements() -> list[nxc_deployment.Placement]:
    return nxc_deployment.place(list(nxc.composition_roles(INFO)), ROLES, IPS)


def test_nodes_are_placed_in_composition_order_with_nxc_host_names():
    assert [(p.node, p.ip, p.role, p.host) for p in placements()] == [
        ("gros-7", "172.16.64.7", "collector", "collector1"),
        ("gros-3", "172.16.64.3", "exporter", "exporter1"),
        ("gros-1", "172.16.64.1", "exporter", "exporter2"),
    ]


def test_roles_that_do_not_match_the_composition_are_refused_before_anything_boots():
    with pytest.raises(ConfigError, match="no node for role collector"):
        nxc_deployment.place(["collector", "exporter"], {"exporter": ["gros-1"]}, IPS)
    with pytest.raises(ConfigError, match="role monitor is not in the composition"):
        nxc_deployment.place(["exporter"], {"exporter": ["gros-1"], "monitor": ["gros-3"]}, IPS)


def test_descriptor_has_nxc_keys_and_the_base64_form_keeps_role_and_host_only():
    info = nxc_deployment.descriptor(INFO, placements(), ssh_key="ssh-ed25519 AAAA me@here\n", user="jdoe")
    assert info["ssh_key.pub"] == "ssh-ed25519 AAAA me@here"
    assert info["deployment"]["172.16.64.7"] == {"role": "collector", "host": "collector1", "toplevel": COLLECTOR}
    assert info["all"] == INFO["all"] and info["compositions_info_path"] == INFO["compositions_info_path"]
    assert (info["composition"], info["user"]) == ("composition", "jdoe")
    reduced = json.loads(base64.b64decode(nxc_deployment.cmdline_value(info)))
    assert reduced["deployment"]["172.16.64.1"] == {"role": "exporter", "host": "exporter2"}
    assert reduced["ssh_key.pub"] == info["ssh_key.pub"]


# What nixos-compose 0.7.11's generate_deploy_info_b64 prints for the same descriptor (run once on its source).
NXC_B64 = (
    "eyJzc2hfa2V5LnB1YiI6ICJzc2gtZWQyNTUxOSBBQUFBIG1lQGhlcmUiLCAiYWxsIjogeyJrZXJuZWwiOiAiL25peC9zdG9yZS9rL2J6SW1h"
    "Z2UiLCAiaW5pdHJkIjogIi9uaXgvc3RvcmUvaS9pbml0cmQiLCAiaW1hZ2UiOiAiL25peC9zdG9yZS94LW5peG9zLnRhci54eiJ9LCAiY29t"
    "cG9zaXRpb25zX2luZm9fcGF0aCI6ICIvbml4L3N0b3JlL2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnZ2dnLWNvbXBvc2l0aW9ucy1p"
    "bmZvLmpzb24iLCAiY29tcG9zaXRpb24iOiAiY29tcG9zaXRpb24iLCAidXNlciI6ICJqZG9lIiwgImRlcGxveW1lbnQiOiB7IjE3Mi4xNi42"
    "NC43IjogeyJyb2xlIjogImNvbGxlY3RvciIsICJob3N0IjogImNvbGxlY3RvcjEifSwgIjE3Mi4xNi42NC4zIjogeyJyb2xlIjogImV4cG9y"
    "dGVyIiwgImhvc3QiOiAiZXhwb3J0ZXIxIn0sICIxNzIuMTYuNjQuMSI6IHsicm9sZSI6ICJleHBvcnRlciIsICJob3N0IjogImV4cG9ydGVy"
    "MiJ9fX0="
)


def test_the_base64_form_is_byte_for_byte_nxcs():
    info = nxc_deployment.descriptor(INFO, placements(), ssh_key="ssh-ed25519 AAAA me@here", user="jdoe")
    assert nxc_deployment.cmdline_value(info) == NXC_B64


def test_the_descriptor_goes_inline_only_while_the_whole_command_line_fits():
    info = nxc_deployment.descriptor(INFO, placements(), ssh_key="k", user="jdoe")
    value = nxc_deployment.cmdline_value(info)
    others = "console=tty0 check_kernel_initrd g5k.run=abc"
    whole = len(f"{others} deploy={value}")
    assert nxc_deployment.inline_value(info, others, limit=whole) == value
    assert nxc_deployment.inline_value(info, others, limit=whole - 1) is None
    # x86's kernel command line is 2048 bytes with its NUL, and the boot loader may add words.
    assert nxc_deployment.CMDLINE_LIMIT < 2048
    assert nxc_deployment.without_deploy("a=1 deploy=xyz  b") == "a=1 b"


def test_nxc_placing_a_node_in_another_role_is_caught():
    expected = placements()
    info = nxc_deployment.descriptor(INFO, expected, ssh_key="k", user="jdoe")
    nxc_deployment.check_placement(info, expected)
    info["deployment"]["172.16.64.3"]["role"] = "collector"
    with pytest.raises(G5kError, match=r"gros-3 \(172.16.64.3\): exporter/exporter1 expected, nxc wrote collector"):
        nxc_deployment.check_placement(info, expected)


def test_deploy_parameter_is_replaced_wherever_it_is():
    append = "deploy=http://172.16.0.1:40000/deploy/composition::g5k-ramdisk.json console=tty0 check_kernel_initrd"
    assert nxc_deployment.with_deploy(append, "abc") == "deploy=abc console=tty0 check_kernel_initrd"
    assert nxc_deployment.with_deploy("a=1 deploy=x b", "y") == "a=1 deploy=y b"
    with pytest.raises(G5kError, match="no deploy= parameter"):
        nxc_deployment.with_deploy("console=tty0 redeploy=x", "y")


def test_environment_description_has_what_kadeploy_needs():
    text = kadeploy_image.environment_description(
        image_url="http://public.nancy.grid5000.fr/~jdoe/g5kdeploy/r/nixos.tar.xz",
        arch="x86_64",
        author="jdoe",
        kernel_params=f"{kadeploy_image.IMAGE_KERNEL_PARAMS} deploy=abc g5k.run=m",
    )
    env = yaml.safe_load(text)
    assert env["image"] == {
        "file": "http://public.nancy.grid5000.fr/~jdoe/g5kdeploy/r/nixos.tar.xz",
        "kind": "tar",
        "compression": "xz",
    }
    assert env["boot"] == {
        "kernel": "/boot/bzImage",
        "initrd": "/boot/initrd",
        # nxc's own parameters first (flavours/grid5000.py), then the descriptor and the run's marker.
        "kernel_params": "boot.shell_on_fail console=tty0 console=ttyS0,115200 check_kernel_initrd "
        "deploy=abc g5k.run=m",
    }
    assert (env["os"], env["arch"], env["filesystem"], env["partition_type"]) == ("linux", "x86_64", "ext4", 131)
    assert env["multipart"] is False and env["destructive"] is False
