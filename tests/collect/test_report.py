from __future__ import annotations

import json
import statistics
from html.parser import HTMLParser

from g5kdeploy.collect import load_results
from g5kdeploy.collect.report import DASH, fmt_ns, write_report
from tests.collect.runs import JOB_UID, KERNEL, SKIP_REASON, make_run

VOID = {"meta", "img", "br", "hr", "link", "input"}


class Structure(HTMLParser):
    """Collects start tags and checks that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes["src"])
        if tag == "a":
            self.links.append(attributes["href"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with {self.stack[-3:]} open")
        else:
            self.stack.pop()


def _fake_plots(run_dir):
    plots = [run_dir / "plots" / "latency-threads-1.png", run_dir / "plots" / "ebpf.png"]
    for path in plots:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
    return plots


def _report(run_dir, **overrides):
    arguments = {
        "plots": _fake_plots(run_dir),
        "exports": {"bench.csv": run_dir / "bench.csv"},
        "node_facts": {"gros-2.nancy.grid5000.fr": {"config_sha256": "c0ffee" * 4}},
        "extra": {"collector": "prometheus"},
    } | overrides
    return write_report(run_dir, **arguments)


def test_markdown_holds_the_key_facts(run_dir):
    markdown, page = _report(run_dir)
    assert markdown == run_dir / "report.md" and page == run_dir / "report.html"
    text = markdown.read_text()
    p50s = [r.latency_ns["p50"] for r in load_results(run_dir) if (r.threads, r.ebpf) == (1, "off")]
    expected = f"{fmt_ns(statistics.fmean(p50s))} ({fmt_ns(min(p50s))}{DASH}{fmt_ns(max(p50s))})"
    row = next(line for line in text.splitlines() if line.startswith("| 1 | off |"))
    assert expected in row, row
    assert "| 1 | off | 2 | 2 |" in row  # repetitions and nodes
    numbers = text.split("## Key numbers", 1)[1].split("\n## ", 1)[0]
    assert len([line for line in numbers.splitlines() if line.startswith(("| 1 |", "| 2 |"))]) == 4
    assert KERNEL in text and "c0ffee" * 4 in text and "/nix/store/abc-nixos-system" in text
    assert f"nancy/{JOB_UID}" in text and "nancy/D-42" in text
    assert "](plots/latency-threads-1.png)" in text and "](plots/ebpf.png)" in text
    assert "[bench.csv](bench.csv)" in text
    assert "| reserve | done | 2026-11-27T15:00:00Z | 2026-11-27T15:00:40Z | 40 |" in text
    assert "prometheus" in text
    assert "Nothing: every pair ran." in text


def test_skipped_pairs_are_reported_with_their_reason(tmp_path):
    run_dir = make_run(tmp_path, ebpf=("off",), skipped=("on",))
    text = _report(run_dir)[0].read_text()
    assert SKIP_REASON in text
    assert "skipped" in text and "threads-1_ebpf-on_rep-1 on gros-2.nancy.grid5000.fr" in text
    # Nothing ran with eBPF on, so no table row claims it did.
    assert "| on |" not in text


def test_html_is_well_formed_and_escapes_everything(run_dir):
    hostile = "gros-9<script>alert(1)<"
    record = json.loads((run_dir / "run.json").read_text())
    record["roles"]["exporter"].append(hostile)
    (run_dir / "run.json").write_text(json.dumps(record))
    source = run_dir / "bench" / "threads-1_ebpf-off_rep-1" / "gros-2.nancy.grid5000.fr.json"
    document = json.loads(source.read_text())
    document["node"] = hostile
    (source.parent / f"{hostile}.json").write_text(json.dumps(document))
    markdown, page = _report(run_dir, node_facts={hostile: {"kernel": "6.1 <b>&amp;</b>"}},
                             extra={"<i>note</i>": "<img src=x onerror=alert(1)>"})  # fmt: skip
    text = page.read_text()
    parser = Structure()
    parser.feed(text)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert "script" not in parser.tags and "b" not in parser.tags and "i" not in parser.tags
    assert parser.tags.count("img") == 2 and sorted(parser.images) == ["plots/ebpf.png", "plots/latency-threads-1.png"]
    assert "bench.csv" in parser.links
    assert "gros-9&lt;script&gt;alert(1)&lt;" in text and "6.1 &lt;b&gt;&amp;amp;&lt;/b&gt;" in text
    assert "<script" not in markdown.read_text()  # Markdown renderers pass raw HTML through: escaped there too


def test_report_of_an_empty_run_does_not_fail(tmp_path):
    run_dir = tmp_path / "statx-broken"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{ damaged")
    markdown, page = write_report(run_dir, plots=[], exports={"missing.csv": run_dir / "missing.csv"}, node_facts={})
    text = markdown.read_text()
    assert "No finished bench results." in text and "(missing)" in text and "no bench/ directory" in text
    assert page.read_text().startswith("<!DOCTYPE html>")
