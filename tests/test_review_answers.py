"""A cluster answer -> labels: accepted, rejected, mixed, exclusions, a second review, a clinician's label winning;
the labels in the training's form, and the export states."""

from __future__ import annotations

import numpy as np
import pytest

from ls_backend.detect.events import Event
from ls_backend.loop import Labeled
from ls_backend.review.answers import (
    ACCEPTED,
    CLUSTER_WEIGHT_CAP,
    MIXED,
    REJECTED,
    REVIEW_WEIGHT,
    ClusterReview,
    apply_reviews,
    review_labels,
    with_reviews,
)


def as_dict(labels) -> dict[str, tuple[float, float]]:
    return {m: (float(t), float(w)) for m, t, w in zip(labels.ids, labels.targets, labels.weights)}


def test_accepted_members_become_soft_spike_labels() -> None:
    labels = review_labels([ClusterReview("c1", ACCEPTED, ("a", "b"))])
    assert as_dict(labels) == {"a": (1.0, REVIEW_WEIGHT), "b": (1.0, REVIEW_WEIGHT)}
    assert 0 < REVIEW_WEIGHT < 1
    assert labels.states == {"a": "accepted", "b": "accepted"}


def test_rejected_members_become_negatives() -> None:
    labels = review_labels([ClusterReview("c1", REJECTED, ("a", "b"))])
    assert as_dict(labels) == {"a": (0.0, REVIEW_WEIGHT), "b": (0.0, REVIEW_WEIGHT)}
    assert labels.states == {"a": "rejected", "b": "rejected"}


def test_a_large_cluster_weighs_at_most_the_cap_together() -> None:
    members = tuple(f"m{k}" for k in range(4 * int(CLUSTER_WEIGHT_CAP)))
    labels = review_labels([ClusterReview("big", REJECTED, members), ClusterReview("small", ACCEPTED, ("a", "b"))])
    weights = dict(zip(labels.ids, labels.weights))
    assert sum(weights[m] for m in members) == pytest.approx(CLUSTER_WEIGHT_CAP)
    assert weights["a"] == weights["b"] == REVIEW_WEIGHT


def test_the_prior_comes_from_the_clinicians_labels_not_from_review_labels() -> None:
    from ls_backend.model.estimator import SpikeDetector

    detector = SpikeDetector()
    clinician = np.array([1, 0, 0, 0], np.float32)  # prevalence 1/4
    accepted = np.ones(40, np.float32)  # a cluster's members, weight 0.5: not the patient's prevalence
    y = np.r_[clinician, accepted]
    weight = np.r_[np.ones(4), np.full(40, REVIEW_WEIGHT)].astype(np.float32)
    assert detector._prior_offset(y, weight) == pytest.approx(detector._prior_offset(clinician, np.ones(4)))
    only_weighted = detector._prior_offset(y, np.full(len(y), 0.3, np.float32))  # no clinician label: all of them
    assert only_weighted > detector._prior_offset(clinician, np.ones(4))


def test_mixed_labels_nothing_and_returns_the_members_to_the_ranking() -> None:
    labels = review_labels([ClusterReview("c1", MIXED, ("a", "b"))])
    assert len(labels) == 0 and labels.states == {}
    assert labels.returned == ("a", "b")


def test_excluded_members_are_not_labeled_with_the_cluster() -> None:
    labels = review_labels([ClusterReview("c1", ACCEPTED, ("a", "b", "c"), frozenset({"b"}))])
    assert set(labels.ids) == {"a", "c"}
    assert labels.returned == ("b",)


def test_a_second_review_replaces_the_first_for_the_members_it_had() -> None:
    first = ClusterReview("c1", ACCEPTED, ("a", "b", "c"))
    second = ClusterReview("c1", REJECTED, ("b", "c", "d"))
    labels = review_labels([first, second])
    assert {m: t for m, (t, _) in as_dict(labels).items()} == {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0}
    excluded_now = ClusterReview("c1", ACCEPTED, ("a", "b"), frozenset({"a"}))
    assert set(review_labels([first, excluded_now]).ids) == {"b", "c"}


def test_a_clinicians_window_label_wins() -> None:
    labels = review_labels([ClusterReview("c1", REJECTED, ("a", "b"))], clinician_labeled={"a"})
    assert labels.ids == ("b",)
    assert "a" not in labels.states


def test_review_labels_join_the_clinicians_in_the_trainings_form() -> None:
    rng = np.random.default_rng(0)
    clinician = Labeled(rng.normal(size=(2, 3, 16)), np.array([1.0, 0.0]), np.zeros((2, 16)), 256.0, np.array([7, 8]))
    labels = review_labels([ClusterReview("c1", ACCEPTED, ("a", "b", "c"), frozenset({"c"}))])
    joined = with_reviews(clinician, rng.normal(size=(2, 3, 16)), labels)
    np.testing.assert_array_equal(joined.y, [1.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(joined.weight, [1.0, 1.0, REVIEW_WEIGHT, REVIEW_WEIGHT])
    np.testing.assert_array_equal(joined.full_weight(), [True, True, False, False])
    assert np.isnan(joined.dense[2:]).all() and not np.isnan(joined.dense[:2]).any()
    assert list(joined.ids) == [7, 8, "a", "b"]
    with pytest.raises(ValueError, match="1 windows for 2 review labels"):
        with_reviews(clinician, rng.normal(size=(1, 3, 16)), labels)


def test_export_states_mark_accepted_and_drop_rejected() -> None:
    events = [Event(onset=t, duration=0.1, peak=t + 0.05, peak_channel="A1", probability=0.9) for t in (1.0, 2.0, 3.0)]
    states = {"e1": "accepted", "e2": "rejected"}
    kept = apply_reviews(events, ["e1", "e2", "e3"], states)
    assert [(e.onset, e.reviewed) for e in kept] == [(1.0, "accepted"), (3.0, "")]
    kept = apply_reviews(events, ["e1", "e2", "e3"], states, keep_rejected=True)
    assert [e.reviewed for e in kept] == ["accepted", "rejected", ""]


def test_bad_answers_are_refused() -> None:
    with pytest.raises(ValueError, match="cluster c1: unknown answer 'Yes'"):
        ClusterReview("c1", "Yes", ("a",))
    with pytest.raises(ValueError, match=r"excluded ids \['z'\] are not members"):
        ClusterReview("c1", ACCEPTED, ("a",), frozenset({"z"}))
    with pytest.raises(ValueError, match="review weight must be in"):
        review_labels([], weight=0)
