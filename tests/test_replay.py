"""The replay benchmark (oracle labeling loop) and the MC-dropout draws BALD reads."""

import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pytest
from model_helpers import TINY, toy_windows

from benchmarks import replay as bench
from converters.windowset import WindowSet, save_windowset
from ls_backend.active.inputs import PoolView
from ls_backend.active.measures import mutual_information
from ls_backend.active.strategies import BALD
from ls_backend.loop import PoolScorer
from ls_backend.model import SpikeDetector


def _toy_windowset(n_per_patient: int = 60) -> WindowSet:
    parts = [toy_windows(n_per_patient, n_chans=3, seed=s) for s in (1, 2)]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return WindowSet(X, y, 256.0, np.repeat(["P1", "P2"], n_per_patient))


def test_mc_draws_give_each_pass_and_feed_bald():
    X, y = toy_windows()
    det = SpikeDetector(**(TINY | {"dropout": 0.3})).fit(X, y)
    draws = det.mc_draws(X, n_samples=5, seed=3)
    assert draws.shape == (5, len(X))
    assert not np.allclose(draws[0], draws[1])  # dropout is on: the passes differ
    np.testing.assert_array_equal(draws, det.mc_draws(X, n_samples=5, seed=3))  # seeded
    assert not np.array_equal(draws, det.mc_draws(X, n_samples=5, seed=4))
    mean, std = det.mc_dropout(X, n_samples=5, seed=3)  # the old API still works
    np.testing.assert_allclose(mean, draws.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, draws.std(axis=0), rtol=1e-6)
    scorer = PoolScorer(det, 256.0, n_draws=5, seed=2)  # the first batch draws with seed 2 + 1
    scorer.add(X)
    view = scorer.view()
    np.testing.assert_array_equal(view.mc_proba, draws.T)
    utility = BALD().utility(PoolView(mc_proba=view.mc_proba))
    np.testing.assert_allclose(utility, mutual_information(draws.T))
    differ = np.ptp(draws, axis=0) > 1e-3
    assert differ.any() and np.all(utility[differ] > 0)  # zero only where every pass agrees
    with pytest.raises(ValueError, match="n_samples"):
        det.mc_draws(X, n_samples=1)


def test_quick_replay_writes_curves_summary_and_plot(tmp_path):
    path = save_windowset(_toy_windowset(), tmp_path / "toy.npz")
    out = tmp_path / "replay.json"
    argv = [
        "--quick",
        "--windowset",
        str(path),
        "--target-patient",
        "P2",
        "--strategies",
        "random",
        "bald",
        "--seeds",
        "2",
        "--jobs",
        "1",
        "--warm-start",
        "--model",
        "dropout=0.2",
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    assert bench.main(argv) == 0
    elapsed = time.perf_counter() - started
    result = json.loads(out.read_text())
    assert plt.imread(out.with_suffix(".png")).shape[1] > 300  # a figure that decodes
    pool_positives = result["data"]["pool_positives"]
    assert set(result["curves"]) == {"random", "bald", "random+warm", "bald+warm"}
    for name, by_seed in result["curves"].items():
        assert set(by_seed) == {"0", "1"}
        for curve in by_seed.values():
            labels = [p["labels"] for p in curve]
            assert labels == ([0] if name.endswith("+warm") else []) + [8, 16]  # 2 rounds of 8
            positives = [p["positives"] for p in curve]  # of the labels so far: they only accumulate
            assert positives == sorted(positives) and positives[-1] <= min(labels[-1], pool_positives)
            assert all(p["best_f1"] >= p["f1"] for p in curve)  # the best threshold is at least as good as 0.5
    chance = result["data"]["test_positives"] / result["data"]["n_test"]
    ceiling = [s["auprc"] for s in result["full_supervised"]["per_seed"].values()]
    assert np.mean(ceiling) > chance + 0.2  # the ceiling learns (4 tiny epochs: one seed may lag)
    assert set(result["full_supervised"]["per_seed"]) == {"0", "1"}
    for entry in result["summary"].values():
        lab = entry["auprc"]["labels_to_95"]
        assert lab["n_seeds"] == 2 and len(lab["per_seed"]) == 2
        assert all(n is None or n in (0, 8, 16) for n in lab["per_seed"])
    assert set(result["targets"]["warm_vs_cold"]["per_strategy"]) == {"random", "bald"}
    assert result["warm_strategies"] == ["random", "bald"]
    assert result["data"]["n_pool"] == 40
    assert result["settings"]["plan"]["model"]["dropout"] == 0.2  # --model over the preset's parameters
    # one job at a time: the run's wall time holds every job and the data loading, and lies within this call
    jobs = result["job_seconds"].values()
    assert result["wall_seconds_data"] + sum(jobs) - 0.05 * len(jobs) <= result["wall_seconds"] <= elapsed
    again = bench.resummarize(out)  # the same summary from the stored curves
    assert again["summary"] == result["summary"] and json.loads(out.read_text())["targets"] == result["targets"]


def test_model_option_takes_detector_parameters_by_name(capsys):
    parser = bench.build_parser()
    assert parser.parse_args(["--model", "channel_pool=lse,width=8"]).model == {"channel_pool": "lse", "width": 8}
    assert parser.parse_args([]).model == {}
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "widht=8"])
    assert "SpikeDetector has no parameter(s) widht" in capsys.readouterr().err


def test_summary_says_not_reached():
    def curve(scores):
        return [{"labels": 10 * (i + 1), "auprc": s, "f1": s} for i, s in enumerate(scores)]

    full = {0: {"auprc": 0.8, "f1": 0.8}, 1: {"auprc": 0.8, "f1": 0.8}}
    curves = {
        "random": {0: curve([0.2, 0.5, 0.7]), 1: curve([0.3, 0.6, 0.9])},  # 95 % of 0.8 = 0.76
        "mixed": {0: curve([0.5, 0.8, 0.8]), 1: curve([0.77, 0.8, 0.8])},
    }
    summary = bench.summarize(curves, full)
    random = summary["random"]["auprc"]["labels_to_95"]
    assert random["per_seed"] == [None, 30] and random["n_reached"] == 1 and not random["all_reached"]
    mixed = summary["mixed"]["auprc"]["labels_to_95"]
    assert mixed["per_seed"] == [20, 10] and mixed["mean"] == 15 and mixed["all_reached"]
    assert summary["mixed"]["auprc"]["aulc"]["mean"] == pytest.approx(np.mean([0.725, 0.7925]))
    compared = bench.compare(summary, "mixed", "random", budget=30)
    assert compared["ratio"] is None and compared["upper_bound"] == pytest.approx(0.5)
    assert bench.compare(summary, "random", "mixed", budget=30)["note"].startswith("random did not reach")
    none = bench.summarize({"random": {0: curve([0.1, 0.2, 0.3])}}, full)["random"]["auprc"]["labels_to_95"]
    assert none["n_reached"] == 0 and none["mean"] is None
    assert bench._fmt_labels({"labels_to_95": none}) == "not reached"
    matched = bench.labels_to_match(curves, "mixed", "random")["ratio_per_seed"]
    assert matched == {0: pytest.approx(20 / 30), 1: None}  # random ends at 0.7 and 0.9; mixed peaks at 0.8
    assert bench.targets(summary, [], 30, curves)["mixed_matches_random_final"]["ratio_per_seed"] == matched


def test_split_keeps_events_in_both_parts_and_checks_the_target():
    ws = _toy_windowset()
    data, info = bench.split_target(ws, "P2", 1 / 3)
    assert info["n_pool"] + info["n_test"] == 60 and info["n_cohort"] == 60
    assert data.reference_y is not None and len(data.reference_X) == 60
    assert info["pool_positives"] > 0 and info["test_positives"] > 0
    with pytest.raises(ValueError, match="P9.*P1, P2"):
        bench.split_target(ws, "P9", 1 / 3)


def test_windowset_from_bids_recordings_labels_windows_from_events_tsv(tmp_path):
    from converters.synthetic import PATIENTS, write_bids
    from converters.windowset import windowset_from_recordings

    write_bids(tmp_path / "bids", "P05", PATIENTS["C"], 20.0)
    ws = windowset_from_recordings([tmp_path / "bids"])
    assert set(ws.groups) == {"P05"} and len(ws) == 20 and ws.X.shape[2] == 256
    assert 0 < ws.y.sum() < len(ws)
    marked = ws.y_dense.max(axis=1) > 0
    assert marked[ws.y >= 0.5].all() and marked.sum() < len(ws) / 2  # spike windows mark their samples; most are clear
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no recording found"):
        windowset_from_recordings([tmp_path / "empty"])


def test_strategies_are_compared_seed_by_seed():
    from benchmarks import replay_compare

    def curve(level):
        return [{"labels": 20, "auprc": level}, {"labels": 40, "auprc": level}]

    result = {
        "curves": {"random": {str(s): curve(0.5 + 0.01 * s) for s in range(4)},
                   "mixed": {str(s): curve(0.6 + 0.01 * s + 0.001 * (s % 2)) for s in range(4)}},  # fmt: skip
        "full_supervised": {"mean": {"auprc": 0.8}},
        "settings": {"budget": 40},
        "summary": {name: {"auprc": {"labels_to_95": {"n_reached": 0}, "final": {"mean": 0.5}}}
                    for name in ("random", "mixed")},  # fmt: skip
    }
    out = replay_compare.compare({"D": result})["D"]
    pair = out["pairs"]["mixed - random"]
    assert pair["mean"] == pytest.approx(0.1005) and pair["ahead"] == 4 and pair["seeds"] == 4
    assert 0 < pair["low"] < 0.1005 < pair["high"]  # ahead on every seed by about 0.1: beyond the seed noise
    assert out["strategies"]["mixed"]["aulc_relative_mean"] == pytest.approx((0.615 + 0.0005) / 0.8)
    assert "| D | mixed - random | +0.100 | [+0.100, +0.101] | 4/4 |" in replay_compare.table({"D": out})


def test_two_runs_of_one_variant_are_compared_side_by_side_by_tag(tmp_path):
    from benchmarks import replay_compare

    def result(level):
        curves = {name: {str(s): [{"labels": 20, "auprc": level + d}, {"labels": 40, "auprc": level + d}]
                         for s in range(3)} for name, d in (("mixed", 0.0), ("mixed+pretrain", 0.1))}  # fmt: skip
        summary = {n: {"auprc": {"labels_to_95": {"n_reached": 0}, "final": {"mean": level}}} for n in curves}
        return {"data": {"target": "B"}, "curves": curves, "summary": summary, "settings": {"budget": 40},
                "full_supervised": {"mean": {"auprc": 1.0}}}  # fmt: skip

    for name, level in (("random.json", 0.3), ("transients.json", 0.3)):
        (tmp_path / name).write_text(json.dumps(result(level)))
    out = tmp_path / "compare.json"
    files = [str(tmp_path / "random.json"), f"{tmp_path / 'transients.json'}=@transients"]
    assert replay_compare.main([*files, "--out", str(out)]) == 0
    strategies = json.loads(out.read_text())["B"]["strategies"]
    assert set(strategies) == {"mixed", "mixed+pretrain", "mixed+pretrain@transients"}
    lse = tmp_path / "lse.json"  # =+TAG: every name of the file, the plain strategies too
    lse.write_text(json.dumps(result(0.4)))
    assert replay_compare.main([str(tmp_path / "random.json"), f"{lse}=+lse", "--out", str(out)]) == 0
    pairs = json.loads(out.read_text())["B"]["pairs"]
    assert set(json.loads(out.read_text())["B"]["strategies"]) == {
        "mixed", "mixed+pretrain", "mixed+lse", "mixed+pretrain+lse"
    }  # fmt: skip
    assert pairs["mixed - mixed+lse"]["mean"] == pytest.approx(-0.1)
    with pytest.raises(SystemExit, match="=@TAG or =\\+TAG"):
        replay_compare.main([f"{lse}=lse"])
