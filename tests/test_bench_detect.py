"""The detection benchmarks: their quick modes run and write their results; the event matching they score by."""

import json

from benchmarks import bench_detect, detect_accuracy, operating_point
from benchmarks.detect_accuracy import TrueSpike, match_events, score_events
from ls_backend.detect.events import Event

CH_NAMES = ["A1-A2", "A2-A3", "A3-A4", "B1-B2"]


def _spike(peak: float) -> TrueSpike:
    return TrueSpike(peak, frozenset({"A1-A2", "A2-A3"}), "A2-A3", frozenset({"A1-A2", "A2-A3", "A3-A4"}))


def _event(peak: float, channels: dict[str, float]) -> Event:
    return Event(peak - 0.05, 0.1, peak, next(iter(channels)), max(channels.values()), channels)


def test_events_match_one_to_one_by_time_on_the_main_contact():
    truth = [_spike(10.0), _spike(20.0)]
    events = [
        _event(10.08, {"A2-A3": 0.9}),  # within 100 ms, on the main contact
        _event(10.02, {"A1-A2": 0.8, "B1-B2": 0.6}),  # closer: takes the spike, the first is left over
        _event(20.0, {"B1-B2": 0.9}),  # right time, wrong place
        _event(30.0, {"A2-A3": 0.9}),  # no spike near
    ]
    assert match_events(events, truth) == [(1, 0)]
    scores = score_events(events, truth, CH_NAMES, minutes=1.0)
    assert (scores["n_matched"], scores["precision"], scores["recall"]) == (1, 0.25, 0.5)
    assert scores["f1"] == 2 * 1 / (4 + 2)
    assert scores["true_per_minute"] == {"A1-A2": 0.0, "A2-A3": 2.0, "A3-A4": 0.0, "B1-B2": 0.0}
    assert scores["top_true"] == ["A2-A3"]  # only one channel holds true spikes: the top is one channel
    assert scores["top_detected"] == ["A2-A3"] and scores["top_agree"]


def test_perfect_detections_score_one():
    truth = [_spike(t) for t in (1.0, 2.0, 3.0)] + [TrueSpike(4.0, frozenset({"B1-B2"}), "B1-B2", frozenset({"B1-B2"}))]
    events = [_event(t, {"A2-A3": 0.9, "A1-A2": 0.7}) for t in (1.0, 2.0, 3.0)] + [_event(4.0, {"B1-B2": 0.9})]
    scores = score_events(events, truth, CH_NAMES, minutes=1.0)
    assert scores["f1"] == 1.0 and scores["rate_correlation"] > 0.99 and scores["top_agree"]


def test_quick_scale_benchmark_writes_json_and_plot(tmp_path):
    out = tmp_path / "detect_scale.json"
    assert bench_detect.main(["--quick", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {r["scorer"] for r in result["runs"]} == {"model", "cold-start"}
    for run in result["runs"]:
        assert run["peak_rss_mb"] >= run["peak_rss_mb_before_scoring"] > 0 and run["seconds"] > 0
        assert run["n_chans"] == 22
    assert set(result["summary"]) == {"model", "cold-start"}
    assert result["summary"]["model"]["three_day_minutes"] > 0
    assert out.with_suffix(".png").stat().st_size > 0


def test_quick_accuracy_benchmark_writes_json_and_plot(tmp_path):
    out = tmp_path / "detect_accuracy.json"
    argv = ["--quick", "--jobs", "1", "--cache", str(tmp_path / "cache"), "--model", "dropout=0.2", "--out", str(out)]
    assert detect_accuracy.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["plan"]["model"]["dropout"] == 0.2  # --model over the preset's parameters
    (patient,) = result["results"]
    models = [row["model"] for row in patient["rows"]]
    assert models == ["8 labels", "16 labels", detect_accuracy.FULL_SUPERVISION, detect_accuracy.CLASSICAL]
    assert patient["n_true"] > 0 and all(0 <= row["f1"] <= 1 for row in patient["rows"])
    assert set(result["summary"]["C"]) == set(models)
    assert result["targets"]["per_patient"] == {}  # no 200-label model in the quick run
    assert out.with_suffix(".png").stat().st_size > 0


def test_quick_operating_point_benchmark_bounds_every_correction(tmp_path):
    out = tmp_path / "operating_point.json"
    assert operating_point.main(["--quick", "--jobs", "1", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (patient,) = result["results"]
    cells = {(row["labels"], row["prevalence"], row["bound"]) for row in patient["rows"]}
    assert cells == {(labels, prevalence, bound) for labels in (8, 16) for prevalence in operating_point.PREVALENCES
                     for bound in operating_point.BOUNDS}  # fmt: skip
    for row in patient["rows"]:  # a bound only ever lowers the correction
        assert row["shift"] >= 0 and (row["bound"] is not None or row["shift"] == 0)
        assert 0 <= row["f1"] <= 1 and row["n_true"] > 0
    assert len(result["summary"]) == len(cells)
