"""The SBOM of a Nix closure from ``nix path-info -r --json`` (both of its JSON shapes), and of sbomnix's output."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest

from g5kdeploy.collect.sbom import closure_document, name_version, nar_hash_hex, nix32_to_hex, read_sboms
from g5kdeploy.errors import G5kError
from g5kdeploy.tools.nix import closure_info_command, parse_closure_info, sbomnix_command

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#: ``nix-hash --type sha256 --to-base32`` of EMPTY_SHA256 (Nix 2.8).
EMPTY_NIX32 = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
TOP = "/nix/store/" + "a" * 32 + "-nixos-system-exporter-25.05.20250601.abcdef0"
LINUX = "/nix/store/" + "b" * 32 + "-linux-6.12.30"
GLIBC = "/nix/store/" + "c" * 32 + "-glibc-2.40-66"
BENCH = "/nix/store/" + "d" * 32 + "-statx-bench"


def test_nix32_digests_decode_as_nix_writes_them():
    assert nix32_to_hex(EMPTY_NIX32) == EMPTY_SHA256
    assert nar_hash_hex(f"sha256:{EMPTY_NIX32}") == EMPTY_SHA256
    assert nar_hash_hex("sha256-" + base64.b64encode(bytes.fromhex(EMPTY_SHA256)).decode()) == EMPTY_SHA256
    assert nar_hash_hex(f"sha256:{EMPTY_SHA256}") == EMPTY_SHA256
    assert nar_hash_hex("md5:whatever") is None


@pytest.mark.skipif(shutil.which("nix-hash") is None, reason="nix-hash (Debian nix-bin) is not installed")
def test_nix32_decoding_agrees_with_the_real_nix_hash():
    digest = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    nix32 = subprocess.run(
        ["nix-hash", "--type", "sha256", "--to-base32", digest], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert nix32_to_hex(nix32) == digest


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (LINUX, ("linux", "6.12.30")),
        (GLIBC, ("glibc", "2.40-66")),
        (BENCH, ("statx-bench", "")),
        (TOP, ("nixos-system-exporter", "25.05.20250601.abcdef0")),
        ("/nix/store/" + "e" * 32 + "-python3.12-requests-2.32.3", ("python3.12-requests", "2.32.3")),
    ],
)
def test_store_paths_split_into_name_and_version_like_parse_drv_name(path, expected):
    assert name_version(path) == expected


def _old_shape() -> str:
    """Nix < 2.19: a list of objects with full reference paths and nix32 hashes."""
    return json.dumps([
        {"path": TOP, "narHash": f"sha256:{EMPTY_NIX32}", "narSize": 100, "references": [LINUX, GLIBC, BENCH]},
        {"path": LINUX, "narHash": f"sha256:{EMPTY_NIX32}", "narSize": 2000, "references": []},
        {"path": GLIBC, "narHash": f"sha256:{EMPTY_NIX32}", "narSize": 300, "references": [GLIBC]},
        {"path": BENCH, "narHash": f"sha256:{EMPTY_NIX32}", "narSize": 40, "references": [GLIBC]},
    ])  # fmt: skip


def _new_shape() -> str:
    """Nix >= 2.19: a map path -> info, references as base names, SRI hashes; an invalid path is null."""
    sri = "sha256-" + base64.b64encode(bytes.fromhex(EMPTY_SHA256)).decode()
    base = lambda path: path.removeprefix("/nix/store/")  # noqa: E731
    return json.dumps({
        TOP: {"narHash": sri, "narSize": 100, "references": [base(LINUX), base(GLIBC), base(BENCH)]},
        LINUX: {"narHash": sri, "narSize": 2000, "references": []},
        GLIBC: {"narHash": sri, "narSize": 300, "references": [base(GLIBC)]},
        BENCH: {"narHash": sri, "narSize": 40, "references": [base(GLIBC)]},
        "/nix/store/" + "f" * 32 + "-gone": None,
    })  # fmt: skip


@pytest.mark.parametrize("output", [_old_shape(), _new_shape()], ids=["nix<2.19", "nix>=2.19"])
def test_a_closure_becomes_a_cyclonedx_document(output):
    document = closure_document(parse_closure_info(output), subject="exporter", toplevel=TOP)
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.5"
    assert document["metadata"]["component"]["name"] == "nixos-system-exporter"
    by_name = {component["name"]: component for component in document["components"]}
    assert set(by_name) == {"nixos-system-exporter", "linux", "glibc", "statx-bench"}
    assert by_name["linux"]["purl"] == "pkg:nix/linux@6.12.30"
    assert by_name["statx-bench"]["purl"] == "pkg:nix/statx-bench"
    assert by_name["glibc"]["hashes"] == [{"alg": "SHA-256", "content": EMPTY_SHA256}]
    depends = {entry["ref"]: entry["dependsOn"] for entry in document["dependencies"]}
    assert depends[TOP] == sorted([LINUX, GLIBC, BENCH]) and depends[GLIBC] == [] and depends[BENCH] == [GLIBC]


def test_path_info_that_is_not_json_is_a_clear_error():
    with pytest.raises(G5kError, match="invalid JSON"):
        parse_closure_info("error: path '/nix/store/x' is not valid")


def test_the_sbom_commands_quote_the_store_path():
    assert closure_info_command(TOP).endswith(f"path-info -r --json {TOP}")
    hostile = "/nix/store/x; rm -rf ~"
    assert "'/nix/store/x; rm -rf ~'" in closure_info_command(hostile)
    assert "sbomnix '/nix/store/x; rm -rf ~' --cdx" in sbomnix_command(hostile)


def test_the_report_reads_component_counts_and_tool(tmp_path):
    document = closure_document(parse_closure_info(_old_shape()), subject="exporter", toplevel=TOP)
    (tmp_path / "sbom").mkdir()
    (tmp_path / "sbom" / "exporter.cdx.json").write_text(json.dumps(document))
    [entry] = read_sboms(tmp_path)
    assert (entry.subject, entry.components, entry.tool) == ("exporter", 4, "nix path-info")
