"""Consistency training on unlabeled windows (ls_backend.model.consistency) and where it enters the loop."""

import json

import numpy as np
import pytest
import torch

from benchmarks import replay as bench
from converters.windowset import WindowSet, save_windowset
from ls_backend.loop import Labeled, Plan, learn
from ls_backend.model import SpikeDetector
from ls_backend.model.consistency import ConsistencyTerm
from tests.model_helpers import TINY, toy_windows


def fitted(**params):
    X, y = toy_windows(60, seed=1)
    return SpikeDetector(**{**TINY, "epochs": 6, **params}).fit(X, y)


def test_the_term_trains_strong_views_towards_the_confident_answers():
    model = fitted()
    X, _ = toy_windows(30, seed=2)
    X[0, 1] = np.nan  # an absent channel is never drawn
    term = ConsistencyTerm(X, threshold=0.6, offset=model.logit_offset_, sharpness=model.sharpness, seed=0)
    assert len(term) == 30 * 5 - 1
    module = model.module_.train()
    loss = term(module, 64)
    assert loss is not None and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)
    assert term.n_positive + term.n_negative > 0


def test_nothing_confident_adds_nothing():
    model = SpikeDetector(**TINY).fit(*toy_windows(12, seed=3))
    X, _ = toy_windows(10, seed=4)
    term = ConsistencyTerm(X, threshold=1 - 1e-9, offset=0.0, sharpness=model.sharpness)
    assert term(model.module_, 16) is None
    with pytest.raises(ValueError, match="consistency_threshold"):
        ConsistencyTerm(X, threshold=0.4, offset=0.0, sharpness=5.0)


def test_a_fit_with_the_term_counts_its_confident_channel_windows_per_epoch():
    X, y = toy_windows(40, seed=5)
    X_free, _ = toy_windows(40, seed=6)
    model = SpikeDetector(**{**TINY, "epochs": 4, "consistency_weight": 1.0, "consistency_threshold": 0.8})
    model.fit(X, y, X_unlabeled=X_free)
    counts = [r["consistent_positive"] + r["consistent_negative"] for r in model.history_]
    assert len(counts) == 4 and counts[-1] > 0
    with pytest.raises(ValueError, match="X_unlabeled must be windows"):
        model.clone().fit(X, y, X_unlabeled=X_free[:, :, :32])


def test_without_weight_the_unlabeled_windows_change_nothing():
    X, y = toy_windows(30, seed=7)
    X_free, _ = toy_windows(30, seed=8)
    a = SpikeDetector(**TINY).fit(X, y)
    b = SpikeDetector(**TINY).fit(X, y, X_unlabeled=X_free)
    assert all(torch.equal(a.module_.state_dict()[k], v) for k, v in b.module_.state_dict().items())
    assert "consistent_positive" not in b.history_[-1]


@pytest.mark.parametrize("pseudo", [True, False])
def test_the_loop_hands_its_unlabeled_windows_to_the_term(pseudo):
    X, y = toy_windows(30, seed=9)
    X_free, _ = toy_windows(40, seed=10)
    plan = Plan(cold_epochs=2, model={**TINY, "consistency_weight": 1.0, "consistency_threshold": 0.6})
    plan = plan if pseudo else Plan(cold_epochs=2, pseudo=None, model=plan.model)
    learned = learn(Labeled(X, y), None, plan, X_free=X_free)
    assert "consistent_negative" in learned.model.history_[-1]


def test_quick_replay_compares_consistency_with_its_base_and_pretrains_on_the_cohort(tmp_path):
    parts = [toy_windows(60, n_chans=3, seed=s) for s in (1, 2)]
    X, y = (np.concatenate([p[k] for p in parts]) for k in (0, 1))
    path = save_windowset(WindowSet(X, y, 256.0, np.repeat(["P1", "P2"], 60)), tmp_path / "toy.npz")
    out = tmp_path / "consistency.json"
    argv = ["--quick", "--windowset", str(path), "--target-patient", "P2", "--strategies", "random", "--seeds", "1",
            "--jobs", "1", "--consistency", "--pretrain", "--pretrain-cohort", "--out", str(out)]  # fmt: skip
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["curves"]) == {"random", "random+consistency", "random+pretrain", "random+pretrain+consistency"}
    per_variant = result["targets"]["consistency_vs_not"]["per_variant"]
    assert set(per_variant) == {"random+consistency", "random+pretrain+consistency"}
    assert set(result["targets"]["pretrain_vs_not"]["per_variant"]) == {"random+pretrain"}
    assert "and the cohort's" in result["pretraining"]["data"]  # --pretrain-cohort: the other patient's windows too
