"""The per-metric figures of the nightly report, read through their matplotlib axes rather than their pixels."""

from __future__ import annotations

import statistics

from g5kdeploy.nightly.history import build_series, load_history
from g5kdeploy.nightly.nightly_report import metric_figure
from g5kdeploy.nightly.regression import detect
from tests.nightly.synthetic import PLAYBOOK, write_history


def _panels(tmp_path, **options):
    write_history(tmp_path, 8, seed=1, **options)
    history = load_history(tmp_path, PLAYBOOK)
    report = detect(history, metrics=["p50_ns"], threshold=0.05)
    series = build_series(history, ["p50_ns"])
    figure = metric_figure("p50_ns", series, report, history)
    values = {one.key.combination: [value for run in one.samples for value in run] for one in series}
    return [(axes.get_title(loc="left"), axes.get_ylim(), values[axes.get_title(loc="left")]) for axes in figure.axes]


def test_a_flat_metric_is_drawn_flat_not_zoomed_to_float_noise_and_a_moving_one_fitted(tmp_path):
    # p50 the same in every run up to 1e-5 ns: the axis must not turn that rounding into a wild zigzag.
    panels = _panels(tmp_path / "flat", noise=1e-8)
    assert len(panels) == 4
    for title, (low, high), values in panels:
        level = statistics.fmean(values)
        assert max(values) - min(values) < 1e-3, title
        # At least +-5 % (the report's threshold) around the level: a change worth reporting would show, noise not.
        assert high - low >= 2 * 0.05 * level * 0.999, (title, low, high)
        assert low < min(values) and max(values) < high
    # A real 40 % step keeps the axis fitted to the data (plus matplotlib's margins), not widened further.
    for title, (low, high), values in _panels(tmp_path / "moving", noise=0.02, scale_from={5: {"p50_ns": 1.4}}):
        assert low <= min(values) and max(values) <= high, title
        assert high - low < 1.3 * (max(values) - min(values)), (title, low, high)
