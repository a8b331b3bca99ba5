"""One round of the labeling loop (ls_backend.loop): training that never crashes on a size, validation that never
takes the only example of a class, and the pool view every strategy reads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from model_helpers import TINY, toy_windows

from ls_backend.loop import Labeled, Plan, PoolScorer, learn, learn_and_rank, train_and_validate, validation_rows
from ls_backend.model import SpikeDetector
from ls_backend.model.estimator import OneCycle, one_cycle
from ls_backend.model.metrics import auprc

TINY_PLAN = Plan(cold_epochs=2, warm_epochs=1, model={k: v for k, v in TINY.items() if k not in ("epochs", "seed")})


def labeled(n: int, n_spikes: int | None = None, seed: int = 0) -> Labeled:
    X, y = toy_windows(n=n, n_times=64, seed=seed)
    if n_spikes is not None:
        y = np.zeros(n, np.float32)
        y[:n_spikes] = 1.0
        for i in range(n_spikes):
            X[i, 0, 20:26] += 8 * np.hanning(6)
    return Labeled(X, y, None, 64.0)


@pytest.mark.parametrize("total", range(1, 41))
def test_one_cycle_rises_and_falls_for_every_length(total):
    lr, beta1 = np.array([one_cycle(step, total) for step in range(total)]).T
    assert np.all(np.isfinite(lr)) and np.all((lr > 0) & (lr <= 1)) and np.all((beta1 >= 0.85) & (beta1 <= 0.95))
    peak = int(np.argmax(lr))
    assert np.all(np.diff(lr[: peak + 1]) > 0) and np.all(np.diff(lr[peak:]) < 0)
    assert np.all(np.diff(beta1[: peak + 1]) < 0) and np.all(np.diff(beta1[peak:]) > 0)  # against the rate
    if total >= 5:
        assert lr.max() > 0.9 and lr[-1] == pytest.approx(1 / 25e4) and beta1[-1] == pytest.approx(0.95)


@pytest.mark.parametrize("total", [11, 20, 100])
def test_one_cycle_follows_pytorchs_policy_where_that_one_works(total):
    param = torch.nn.Parameter(torch.zeros(1))
    ours, theirs = (torch.optim.AdamW([param], lr=3e-3) for _ in range(2))
    schedule = OneCycle(ours, total)
    reference = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=3e-3, total_steps=total, pct_start=0.1)
    for _ in range(total - 1):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-9)
        assert ours.param_groups[0]["betas"][0] == pytest.approx(theirs.param_groups[0]["betas"][0], rel=1e-9)
        ours.step()  # no gradient: nothing moves, but the schedulers expect an optimizer step first
        theirs.step()
        schedule.step()
        reference.step()


@pytest.mark.parametrize("n", [1, 9, 33, 64, 65])
@pytest.mark.parametrize(("epochs", "batch_size"), [(1, 8), (5, 32), (10, 8)])
def test_fit_trains_for_every_count_of_windows_epochs_and_batch(n, epochs, batch_size):
    # 33-64 windows at batch 32 and 5 epochs made exactly 10 steps, which crashed PyTorch's OneCycleLR
    X, y = toy_windows(n=n, n_times=32)
    det = SpikeDetector(**(TINY | {"epochs": epochs, "batch_size": batch_size, "samples_per_epoch": None}))
    before = [p.detach().clone() for p in det.build_module().parameters()]
    det.fit(X, y)
    assert len(det.history_) == epochs and all(math.isfinite(h["loss"]) for h in det.history_)
    after = list(det.module_.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # it learned something


def test_training_to_convergence_lowers_the_rate_on_plateaus_then_stops():
    X, y = toy_windows(n=48, n_times=32)
    det = SpikeDetector(**(TINY | {"epochs": 60, "patience": 2})).fit(X[:32], y[:32], eval_set=(X[32:], y[32:]))
    scores = [h["val_auprc"] for h in det.history_]
    assert 2 * 4 < len(scores) < 60  # patience epochs without improvement at each of 4 rates, then stopped
    best = int(np.argmax(scores))  # the weights kept are the best epoch's
    np.testing.assert_allclose(auprc(y[32:], det.predict_proba(X[32:])), scores[best], atol=1e-6)


def test_validation_never_holds_back_the_only_example_of_a_class():
    rng = np.random.default_rng(0)
    one_spike = np.r_[1.0, np.zeros(14)]
    assert not validation_rows(one_spike, 10, rng).any()
    two = np.r_[1.0, 1.0, np.zeros(13)]
    held = validation_rows(two, 10, rng)
    assert held[:2].sum() == 1 and held[2:].sum() == 2  # one of two spikes, a fifth of the negatives
    assert not validation_rows(np.r_[1.0, 1.0, np.zeros(5)], 10, rng).any()  # below min_labels


def test_a_single_labeled_spike_is_trained_on_and_found():
    data = labeled(16, n_spikes=1)
    learned = learn(data, None, Plan(cold_epochs=20, model=TINY_PLAN.model))
    assert learned.promoted and learned.metrics["n_train"] == 16 and learned.metrics["n_validation"] == 0
    proba = learned.model.predict_proba(data.X)
    assert proba[0] > np.max(proba[1:])  # the model learned the spike: it is no longer "No spike" everywhere


@pytest.mark.parametrize("n", [41, 64, 80])
def test_warm_retraining_with_pseudo_labels_runs_for_41_to_80_labels(n):
    first = labeled(20, seed=1)
    serving = learn(first, None, TINY_PLAN).model
    X_free, _ = toy_windows(n=500, n_times=64, seed=2)
    plan = Plan(cold_epochs=15, warm_epochs=5, model=TINY_PLAN.model)  # the live epochs: 5 x 2 steps crashed
    candidate, metrics = train_and_validate(labeled(n, seed=3), serving, plan, X_free=X_free)
    assert candidate.warm_started_ and len(candidate.history_) == 5
    assert metrics["n_validation"] >= 2 and "serving_auprc" in metrics and metrics["n_pseudo_labels"] >= 0
    assert metrics["background_shift"] >= 0  # the typical unlabeled window is background: recorded with the model


def test_a_candidate_worse_than_the_serving_model_is_not_promoted():
    data = labeled(30, seed=4)
    X_long, y_long = toy_windows(n=60, n_times=96, seed=8)  # another window length: the candidate starts cold
    serving = learn(Labeled(X_long, y_long, None, 64.0), None, Plan(cold_epochs=20, model=TINY_PLAN.model)).model
    untrained = Plan(cold_epochs=0, model=TINY_PLAN.model, pseudo=None)
    learned = learn(data, serving, untrained)
    assert learned.metrics["serving_auprc"] > learned.metrics["candidate_auprc"]
    assert not learned.promoted and learned.model is serving


def test_the_pool_view_holds_everything_a_strategy_reads():
    data = labeled(12)
    pool, _ = toy_windows(n=40, n_times=64, seed=5)
    model = learn(data, None, TINY_PLAN).model
    scorer = PoolScorer(model, 64.0)
    outs = [scorer.add(pool[:25]), scorer.add(pool[25:])]
    view = scorer.view(data)
    np.testing.assert_allclose(view.proba, model.predict_proba(pool), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(view.embeddings, model.embed(pool), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(view.labeled_embeddings, model.embed(data.X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(view.labeled_y, data.y)
    assert view.detector_score.shape == (40,) and len(outs[0]["dense"]) == 25
    cold = PoolScorer(None, 64.0)
    assert cold.add(pool) is None
    cold_view = cold.view(data)
    assert cold_view.proba is None and cold_view.embeddings.shape == (40, 5 * 2)  # the detector's features
    assert cold_view.labeled_embeddings.shape == (12, 10)


def test_learn_and_rank_ranks_the_pool_with_the_model_it_serves():
    data = labeled(20, seed=6)
    pool, _ = toy_windows(n=60, n_times=64, seed=7)
    learned, ranking = learn_and_rank(data, pool, None, "entropy", 10, TINY_PLAN, seed=0)
    proba = learned.model.predict_proba(pool)
    assert sorted(ranking.order) == list(range(60))
    assert abs(proba[ranking.order[0]] - 0.5) == pytest.approx(np.min(np.abs(proba - 0.5)), abs=1e-6)


def test_the_plan_sets_the_smallest_epoch_unless_its_model_parameters_do():
    data = labeled(16, n_spikes=4)
    candidate, _ = train_and_validate(data, None, Plan(cold_epochs=1, min_epoch_windows=64, model=TINY_PLAN.model))
    assert candidate.min_epoch_samples == 64
    plan = Plan(cold_epochs=1, min_epoch_windows=64, model={**TINY_PLAN.model, "min_epoch_samples": 8})
    assert train_and_validate(data, None, plan)[0].min_epoch_samples == 8
