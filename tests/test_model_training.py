"""Training strategies (soft labels, dense targets, pseudo-labels, warm start) and checkpoints."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from model_helpers import TINY, toy_windows

from ls_backend.model import CheckpointError, SpikeDetector, load_checkpoint, save_checkpoint
from ls_backend.model.checkpoints import latest_valid_checkpoint
from ls_backend.model.training import (
    PseudoLabelParams,
    dense_targets,
    fit_with_pseudo_labels,
    pseudo_labels,
    robust_scale_patient,
    soft_target,
    soft_targets,
    warm_start,
)

_toy = toy_windows


# ---------------------------------------------------------------------------------------------- soft labels


def test_soft_targets_from_several_clinicians():
    assert soft_target(["Spike", "Spike"]) == 1.0
    assert soft_target(["Spike", "No spike"]) == 0.5
    assert soft_target(["Unsure"]) == 0.5  # a soft target, not a discarded label
    assert soft_target(["Spike", "Unsure", None]) == 0.75  # None (skipped) is ignored
    assert soft_target([None]) is None and soft_target([]) is None
    with pytest.raises(ValueError, match="'Maybe'"):
        soft_target(["Maybe"])
    y, labelled = soft_targets([["Spike"], [], ["No spike", "Unsure"], [None]])
    assert y.tolist() == [1.0, 0.0, 0.25, 0.0] and labelled.tolist() == [True, False, True, False]


def test_soft_labels_train_and_move_predictions():
    """Windows labelled 'Unsure' by everybody are pulled towards 0.5, not thrown away."""
    X, y = _toy(n=30)
    soft = y.copy()
    soft[y == 1] = 0.5
    hard = SpikeDetector(**(TINY | {"epochs": 6})).fit(X, y)
    unsure = SpikeDetector(**(TINY | {"epochs": 6})).fit(X, soft)
    pos = y == 1
    assert unsure.predict_proba(X)[pos].mean() < hard.predict_proba(X)[pos].mean()


def test_dense_targets_softened_at_edges():
    sfreq = 100.0
    t = dense_targets([(0.30, 0.50)], 100, sfreq, edge_seconds=0.04)
    assert t[35:45].min() == pytest.approx(1.0)  # inside, away from the edges
    assert t[:27].max() == 0 and t[53:].max() == 0  # outside the ramps
    assert 0 < t[29] < 1 and 0 < t[50] < 1  # on the ramps
    assert t[30] == pytest.approx(0.625)  # sample 30 is centred at 0.305: 0.025 s into a 0.04 s ramp
    hard = dense_targets([(0.30, 0.50)], 100, sfreq, edge_seconds=0.0)
    assert hard.sum() == 20 and set(np.unique(hard)) == {0.0, 1.0}
    shifted = dense_targets([(10.30, 10.50, 0.5)], 100, sfreq, onset_seconds=10.0, edge_seconds=0.04)
    np.testing.assert_allclose(shifted, 0.5 * t, atol=1e-6)  # task seconds; value = annotator agreement
    both = dense_targets([(0.1, 0.2), (0.15, 0.3)], 100, sfreq, edge_seconds=0.0)
    assert both.max() == 1.0 and both.sum() == 20


def test_robust_scale_patient():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.standard_normal((10, 2, 50)) * 5, rng.standard_normal((10, 2, 50)) * 0.1]).astype(
        np.float32
    )
    X[:, 1] *= 3
    X[15, 0] = np.nan
    scaled = robust_scale_patient(X, np.r_[["p"] * 10, ["q"] * 10])
    for rows in (slice(0, 10), slice(10, 20)):
        assert np.nanstd(scaled[rows], axis=(0, 2)) == pytest.approx([1.0, 1.0], rel=0.15)
    assert np.isnan(scaled[15, 0]).all()


# ---------------------------------------------------------------------------------------------- pseudo-labels


def test_pseudo_labels_never_override_humans():
    proba = np.array([0.99, 0.99, 0.01, 0.5, 0.001, 0.97])
    human = np.array([True, False, True, False, False, False])
    targets, weights, selected = pseudo_labels(proba, human, PseudoLabelParams(0.95, 0.02, 0.3))
    assert selected.tolist() == [False, True, False, False, True, True]
    assert targets[selected].tolist() == [1.0, 0.0, 1.0]
    assert weights.tolist() == pytest.approx([0, 0.3, 0, 0, 0.3, 0.3])
    _, _, capped = pseudo_labels(proba, human, PseudoLabelParams(0.95, 0.02, 0.3, max_fraction=0.25))
    assert capped.tolist() == [False, True, False, False, True, False]  # the most confident of each class


def test_self_training_recomputes_and_keeps_human_labels(monkeypatch):
    X, y = _toy(n=48)
    X_lab, y_lab, X_unl = X[:12], y[:12], X[12:]
    calls = []
    original_fit = SpikeDetector.fit

    def recording_fit(self, X, y, sample_weight=None, **kwargs):
        calls.append((np.array(y), np.array(sample_weight)))
        return original_fit(self, X, y, sample_weight=sample_weight, **kwargs)

    monkeypatch.setattr(SpikeDetector, "fit", recording_fit)
    det = SpikeDetector(**(TINY | {"epochs": 6, "samples_per_epoch": 64}))
    y_flipped = 1 - y_lab  # humans say the opposite of what the data shows: pseudo-labels must not undo it
    model, log = fit_with_pseudo_labels(det, X_lab, y_flipped, X_unl, rounds=2,
                                        params=PseudoLabelParams(0.7, 0.3, 0.25))
    assert model.is_fitted and [r.round for r in log] == [1, 2] and len(calls) == 3
    for targets, weights in calls[1:]:
        np.testing.assert_array_equal(targets[:12], y_flipped)  # human labels first, unchanged, weight 1
        np.testing.assert_array_equal(weights[:12], 1.0)
        assert np.all(weights[12:] == 0.25) and len(targets) - 12 <= len(X_unl)
    counts = [r.n_pseudo_positive + r.n_pseudo_negative for r in log]
    assert [len(t) - 12 for t, _ in calls[1:]] == counts  # each round's own selection, recomputed
    assert max(counts) > 0


# ---------------------------------------------------------------------------------------------- warm start


def test_warm_start_with_fallback_to_cold():
    X, y = _toy(n=30, n_chans=4, seed=0)
    cohort = SpikeDetector(**(TINY | {"epochs": 4})).fit(X, y)
    X_new, y_new = _toy(n=24, n_chans=7, seed=1)  # a new patient with another layout
    zero = warm_start(cohort, X_new[:0], y_new[:0])
    assert zero.choice == "cohort" and zero.model is cohort
    result = warm_start(cohort, X_new[:12], y_new[:12], X_new[12:], y_new[12:], freeze_blocks=1)
    assert result.choice in ("warm", "cold") and set(result.scores) == {"warm", "cold"}
    assert result.scores[result.choice] == max(result.scores.values())
    # a cohort trained on the opposite task does not transfer: fine-tuning it briefly loses to cold start
    bad = SpikeDetector(**(TINY | {"epochs": 6})).fit(X, 1 - y)
    fallback = warm_start(bad, X_new[:12], y_new[:12], X_new[12:], y_new[12:], freeze_blocks=2,
                          fine_tune={"epochs": 1, "lr": 1e-4})
    assert fallback.choice == "cold" and fallback.scores["cold"] > fallback.scores["warm"]


# ---------------------------------------------------------------------------------------------- epochs


def test_an_epoch_draws_at_least_min_epoch_samples_windows(monkeypatch):
    from ls_backend.model import estimator

    totals, real = [], estimator.OneCycle
    monkeypatch.setattr(estimator, "OneCycle", lambda optimizer, total: totals.append(total) or real(optimizer, total))
    X, y = _toy(24)
    SpikeDetector(**TINY).fit(X, y)  # batch 8, 2 epochs of the 24 windows: 3 steps each
    SpikeDetector(**(TINY | {"min_epoch_samples": 64})).fit(X, y)  # 8 steps each
    SpikeDetector(**(TINY | {"min_epoch_samples": 16})).fit(X, y)  # the training set is larger: 3
    assert totals == [6, 16, 6]


# ---------------------------------------------------------------------------------------------- prior correction


def _spike_heavy_fit(**params) -> tuple[SpikeDetector, np.ndarray]:
    """A model fitted on labels three quarters spikes (a prior correction that lifts every logit), with unlabeled
    background windows."""
    X, y = _toy(48)
    rows = np.r_[np.flatnonzero(y == 1), np.flatnonzero(y == 0)[:5]]
    background = np.random.default_rng(1).standard_normal((64, 5, 64)).astype(np.float32)
    det = SpikeDetector(**(TINY | params)).fit(X[rows], y[rows], X_unlabeled=background)
    return det, background


def test_the_typical_unlabeled_window_stays_below_the_threshold_whatever_the_labels_prevalence():
    free, background = _spike_heavy_fit(background_logit=None)
    bounded, _ = _spike_heavy_fit(background_logit=-1.0)
    assert free.logit_offset_ > 0 and free.background_shift_ == 0  # 16 spikes in 21 labels
    logit = lambda det: np.log(det.predict_proba(background)) - np.log1p(-det.predict_proba(background))  # noqa: E731
    assert np.median(logit(bounded)) <= -1.0 + 1e-3
    assert bounded.background_shift_ > 0
    # the same network, only the offset lowered: every logit moves by the shift, the ranking is unchanged
    np.testing.assert_allclose(logit(free) - logit(bounded), bounded.background_shift_, atol=1e-3)
    assert bounded.logit_offset_ == pytest.approx(free.logit_offset_ - bounded.background_shift_)


def test_the_bound_never_raises_the_offset_and_needs_enough_unlabeled_windows():
    det, background = _spike_heavy_fit(background_logit=50.0)  # every median is below it
    assert det.background_shift_ == 0
    X, y = _toy(48)
    few = SpikeDetector(**(TINY | {"background_logit": -50.0})).fit(X, y, X_unlabeled=background[:5])
    assert few.background_shift_ == 0
    none = SpikeDetector(**(TINY | {"background_logit": -50.0})).fit(X, y)
    assert none.background_shift_ == 0


# ---------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture
def fitted():
    X, y = _toy()
    return SpikeDetector(**(TINY | {"dilation": (1, 2)})).fit(X, y), X


def test_checkpoint_round_trip(tmp_path, fitted):
    det, X = fitted
    meta = {"version": "v2", "parent_version": "v1", "labels_used": 24, "metrics": {"auprc": 0.5},
            "preprocessing": {"sfreq": 256.0}}
    path = save_checkpoint(tmp_path / "model.pt", det, meta)
    loaded, back = load_checkpoint(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), det.predict_proba(X))
    assert back["version"] == "v2" and back["parent_version"] == "v1" and back["metrics"]["auprc"] == 0.5
    assert "software" in back and "saved_at" in back
    assert loaded.get_params() == det.get_params()
    assert not det.clone().is_fitted and det.clone().get_params() == det.get_params()
    # it loads with weights_only=True: plain tensors and strings, nothing pickled
    payload = torch.load(path, weights_only=True)
    assert set(payload) >= {"format", "params_json", "metadata_json", "state_dict"}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_checkpoint_saved_before_channel_pool_existed_loads_with_the_maximum(tmp_path, fitted):
    det, X = fitted
    path = save_checkpoint(tmp_path / "model.pt", det.set_params(channel_pool="lse"))
    payload = torch.load(path, weights_only=True)
    params = json.loads(payload["params_json"])
    del params["channel_pool"]  # as written before the option (the maximum, whatever the default)
    torch.save(payload | {"params_json": json.dumps(params)}, path)
    loaded, _ = load_checkpoint(path)
    assert loaded.channel_pool == "max"
    np.testing.assert_array_equal(loaded.predict_proba(X), det.set_params(channel_pool="max").predict_proba(X))


@pytest.mark.parametrize("pool", ["max", "lse"])
def test_regions_are_drawn_exactly_on_the_windows_answered_spike(fitted, pool):
    det, X = fitted
    try:
        det.set_params(channel_pool=pool, threshold=0.5)
        proba = det.predict_proba(X)
        dense, _ = det.predict_dense(X)
        np.testing.assert_allclose(dense.max(axis=1), proba, rtol=1e-5, atol=1e-6)  # the peak is the answer
        det.set_params(threshold=float(np.median(proba)))  # some windows each side
        drawn = [bool(regions) for regions in det.predict_regions(X)]
        assert drawn == (proba >= det.threshold).tolist() and any(drawn) and not all(drawn)
    finally:
        det.set_params(channel_pool="max", threshold=0.5)


def test_corrupt_checkpoint_refused_and_previous_kept(tmp_path, fitted):
    det, X = fitted
    good = save_checkpoint(tmp_path / "v1.pt", det, {"version": "v1"})
    data = good.read_bytes()
    truncated = tmp_path / "v2.pt"
    truncated.write_bytes(data[: len(data) // 2])
    os.utime(truncated, (good.stat().st_mtime + 10,) * 2)  # the newest file is the broken one
    with pytest.raises(CheckpointError, match="v2.pt.*corrupt"):
        load_checkpoint(truncated)
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a spike-al"):
        load_checkpoint(tmp_path / "other.pt")
    os.utime(tmp_path / "junk.pt", (good.stat().st_mtime + 20,) * 2)
    os.utime(tmp_path / "other.pt", (good.stat().st_mtime - 20,) * 2)
    path, loaded, meta = latest_valid_checkpoint(tmp_path)
    assert path == good and meta["version"] == "v1"


def test_failed_save_keeps_previous(tmp_path, fitted, monkeypatch):
    det, X = fitted
    path = save_checkpoint(tmp_path / "model.pt", det, {"version": "v1"})
    before = path.read_bytes()

    def broken_save(obj, fh, *args, **kwargs):
        fh.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, det, {"version": "v2"})
    assert path.read_bytes() == before and not list(tmp_path.glob("*.tmp"))
    unfitted = SpikeDetector()
    with pytest.raises(RuntimeError, match="not fitted"):
        save_checkpoint(tmp_path / "x.pt", unfitted)
