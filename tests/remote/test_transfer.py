"""Files and trees to and from nodes, with every byte checked."""

from __future__ import annotations

import hashlib

from tests.remote.conftest import NAMES


def test_put_then_get_a_file_round_trips(runner, testbed, tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 400)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    remote = f"{testbed.directory}/payload-copy.bin"
    sent = runner.put(NAMES[:3], payload, remote)
    assert all(result.ok and result.sha256 == digest and result.bytes == 102400 for result in sent.values()), sent
    received = runner.get(NAMES[:3], remote, tmp_path / "back")
    for name, result in received.items():
        assert result.ok and result.sha256 == digest, result
        assert (tmp_path / "back" / name / "payload-copy.bin").read_bytes() == payload.read_bytes()


def test_a_file_that_does_not_arrive_intact_is_reported(runner, tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_text("important\n")
    # Whatever is written to /dev/null reads back empty: the node's checksum cannot match.
    sent = runner.put(NAMES[:1], payload, "/dev/null")[NAMES[0]]
    assert not sent.ok and "sha256 mismatch" in sent.error
    # /proc/uptime changes between the node's checksum and the copy.
    received = runner.get(NAMES[:1], "/proc/uptime", tmp_path / "back")[NAMES[0]]
    assert not received.ok and "sha256 mismatch" in received.error


def test_a_missing_remote_file_is_reported_per_host(runner, tmp_path):
    results = runner.get(NAMES[:2], "/nonexistent/file.txt", tmp_path / "back")
    for result in results.values():
        assert not result.ok and "No such file" in result.error


def test_put_tree_then_get_tree_round_trips(runner, testbed, tmp_path):
    tree = tmp_path / "tree"
    (tree / "conf" / "deep").mkdir(parents=True)
    (tree / "top.txt").write_text("top\n")
    (tree / "conf" / "a.yaml").write_text("a: 1\n")
    (tree / "conf" / "deep" / "blob.bin").write_bytes(b"\0\1\2" * 5000)
    (tree / "with space.txt").write_text("spaced\n")
    names = list(NAMES[:3])
    remote_dir = f"{testbed.directory}/tree-copy-{{}}"
    # Each node gets its own directory, since all loopback nodes share one filesystem.
    sent = {}
    for name in names:
        sent.update(runner.put_tree([name], tree, remote_dir.format(name)))
    assert all(result.ok and result.bytes == 15016 for result in sent.values()), sent
    assert len({result.sha256 for result in sent.values()}) == 1
    assert not (testbed.directory / f"tree-copy-{names[0]}" / ".g5kdeploy-manifest.sha256").exists()

    received = runner.get_tree(names[:1], remote_dir.format(names[0]), tmp_path / "back")[names[0]]
    assert received.ok and received.sha256 == sent[names[0]].sha256, received
    back = tmp_path / "back" / names[0]
    files = sorted(p.relative_to(back).as_posix() for p in back.rglob("*") if p.is_file())
    assert files == ["conf/a.yaml", "conf/deep/blob.bin", "top.txt", "with space.txt"]
    assert (back / "conf" / "deep" / "blob.bin").read_bytes() == b"\0\1\2" * 5000


def test_a_tree_upload_to_an_unwritable_place_fails(runner, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("f")
    result = runner.put_tree(NAMES[:1], tree, "/proc/no-such-dir")[NAMES[0]]
    assert not result.ok and "tree upload failed" in result.error
