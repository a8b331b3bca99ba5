"""How a candidate is scored: a held-back slice from 10 labels on, 3-fold cross-validation below that."""

import numpy as np
from model_helpers import toy_windows

from ls_backend.budget.status import quality_points
from ls_backend.loop import Labeled, train_and_validate
from ls_backend.model.metrics import auprc


def test_few_labels_are_cross_validated_and_many_are_held_back():
    X, y = toy_windows(n=9, n_times=128)
    dense = np.full((len(y), X.shape[2]), np.nan, np.float32)
    _, few = train_and_validate(Labeled(X, y, dense, 128.0), None)
    assert few["n_validation"] == 0 and few["cv_auprc"] > 0.9  # the transients are easy; chance is 1/3
    noise = np.random.default_rng(0).standard_normal(X.shape).astype(np.float32)  # labels the data cannot explain
    fitted, guessed = train_and_validate(Labeled(noise, y, dense, 128.0), None)
    # out of fold: below what the model scores on the windows it memorized (in-sample scoring would equal it)
    assert guessed["cv_auprc"] < auprc(y >= 0.5, fitted.predict_proba(noise)) - 0.1

    X, y = toy_windows(n=15, n_times=128)
    dense = np.full((len(y), X.shape[2]), np.nan, np.float32)
    _, many = train_and_validate(Labeled(X, y, dense, 128.0), None)
    assert many["n_validation"] >= 2 and "cv_auprc" not in many


def test_the_budget_curve_takes_both_kinds_of_score():
    history = [
        {"version": "p1-v0001", "labels_used": 6, "metrics": {"n_validation": 0, "candidate_auprc": 0.0,
                                                              "cv_auprc": 0.4}},
        {"version": "p1-v0002", "labels_used": 12, "metrics": {"n_validation": 3, "candidate_auprc": 0.6}},
        {"version": "p1-v0003", "labels_used": 3, "metrics": {"n_validation": 0, "candidate_auprc": 0.0}},
    ]  # fmt: skip
    points = quality_points(history)
    assert [(p["labels"], p["score"], p["method"]) for p in points] == [
        (6, 0.4, "cross-validated"), (12, 0.6, "held back")
    ]  # fmt: skip
