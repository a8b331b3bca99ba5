"""Grouping detections for review, on constructed embeddings: groups found, the "other" bucket, determinism, ids and
decisions kept across a reclustering."""

from __future__ import annotations

import numpy as np
import pytest

from ls_backend.review.answers import ACCEPTED, ClusterReview, review_labels
from ls_backend.review.clusters import (
    Detections,
    cluster_detections,
    review_order,
    window_detections,
)

DIM = 8


def detections(groups: list[tuple[str, int, float]], seed: int = 0, prefix: str = "w") -> tuple[Detections, list]:
    """Detections in groups ``(shaft, size, scatter)`` around well-separated centres; also each group's ids."""
    rng = np.random.default_rng(seed)
    centres = np.eye(DIM)[: len(groups)] * 10
    parts, ids, shafts, truth = [], [], [], []
    for g, (shaft, size, scatter) in enumerate(groups):
        parts.append(centres[g] + rng.normal(0, scatter, (size, DIM)))
        names = [f"{prefix}{g}-{i}" for i in range(size)]
        ids += names
        shafts += [shaft] * size
        truth.append(set(names))
    n = len(ids)
    det = Detections(
        ids=tuple(ids),
        embedding=np.concatenate(parts),
        probability=rng.uniform(0.5, 1.0, n),
        peak_channel=tuple(f"{s}1-{s}2" for s in shafts),
        shaft=tuple(shafts),
        time_seconds=np.arange(n, dtype=float),
    )
    return det, truth


def background(seed: int = 1) -> np.ndarray:
    """Ordinary windows: unit scatter around the centres' middle."""
    return np.random.default_rng(seed).normal(0, 3, (400, DIM))


def test_well_separated_groups_are_found_largest_first() -> None:
    det, truth = detections([("A", 40, 1.0), ("A", 25, 1.0), ("B", 12, 1.0)])
    clustering = cluster_detections(det, background=background())
    assert [c.size for c in clustering.clusters] == [40, 25, 12]
    assert [set(c.members) for c in clustering.clusters] == truth
    assert [c.shaft for c in clustering.clusters] == ["A", "A", "B"]
    assert clustering.other == ()
    first = clustering.clusters[0]
    assert first.peak_contacts == {"A1-A2": 40}
    assert list(first.distances) == sorted(first.distances)
    assert first.representatives == first.members[:3]
    assert first.atypical == first.members[::-1][:3]


def test_small_and_incoherent_groups_go_to_other() -> None:
    det, truth = detections([("A", 30, 1.0), ("B", 3, 1.0), ("C", 10, 30.0)])
    clustering = cluster_detections(det, background=background(), min_size=5)
    assert [set(c.members) for c in clustering.clusters] == [truth[0]]
    assert set(clustering.other) == truth[1] | truth[2]


def test_groups_beyond_max_clusters_go_to_other() -> None:
    det, truth = detections([("A", 30, 1.0), ("B", 20, 1.0), ("C", 10, 1.0)])
    clustering = cluster_detections(det, background=background(), max_clusters=2)
    assert [c.size for c in clustering.clusters] == [30, 20]
    assert set(clustering.other) == truth[2]


def test_clustering_is_deterministic_for_a_seed() -> None:
    det, _ = detections([("A", 40, 2.0), ("A", 30, 2.0), ("A", 20, 2.0)])
    assert cluster_detections(det, seed=3) == cluster_detections(det, seed=3)


def test_a_reclustered_cluster_keeps_its_id_and_its_members_their_decisions() -> None:
    det, _ = detections([("A", 30, 1.0), ("B", 20, 1.0)])
    first = cluster_detections(det, background=background())
    accepted = first.clusters[0]
    reviews = [ClusterReview(accepted.id, ACCEPTED, accepted.members)]
    # a retraining moves every embedding a little, and a new detection run adds members
    moved = Detections(
        ids=det.ids,
        embedding=det.embedding + np.random.default_rng(5).normal(0, 0.3, det.embedding.shape),
        probability=det.probability,
        peak_channel=det.peak_channel,
        shaft=det.shaft,
        time_seconds=det.time_seconds,
    )
    new, _ = detections([("A", 8, 1.0)], seed=9, prefix="new")
    both = Detections(
        ids=moved.ids + new.ids,
        embedding=np.concatenate([moved.embedding, new.embedding]),
        probability=np.r_[moved.probability, new.probability],
        peak_channel=moved.peak_channel + new.peak_channel,
        shaft=moved.shaft + new.shaft,
        time_seconds=np.r_[moved.time_seconds, new.time_seconds],
    )
    second = cluster_detections(both, background=background(), previous=first.membership())
    assert [c.id for c in second.clusters] == [c.id for c in first.clusters]
    again = second.clusters[0]
    assert set(again.members) == set(accepted.members) | set(new.ids)
    labels = review_labels(reviews)
    assert set(labels.ids) == set(accepted.members)  # the old members keep the decision; the new ones have none
    decided = {m for r in reviews for m in r.members}
    # still offered for its 8 new members, after the unreviewed cluster of 20
    assert [c.id for c in review_order(second, decided)] == [second.clusters[1].id, again.id]


def test_review_order_puts_large_uncertain_clusters_first() -> None:
    det, _ = detections([("A", 30, 1.0), ("B", 20, 1.0)])
    confident = np.where(np.array(det.shaft) == "A", 0.99, 0.6)
    det = Detections(det.ids, det.embedding, confident, det.peak_channel, det.shaft, det.time_seconds)
    clustering = cluster_detections(det, background=background())
    assert [c.shaft for c in review_order(clustering)] == ["B", "A"]
    every = {m for c in clustering.clusters for m in c.members}
    assert review_order(clustering, decided=every) == []


def test_window_detections_take_the_driving_channel_and_its_shaft() -> None:
    outputs = {
        "proba": np.array([0.9, 0.2, 0.7]),
        "channel": np.array([[0.9, 0.1, np.nan], [0.2, 0.1, 0.0], [0.1, 0.2, 0.7]]),
        "embedding": np.arange(6, dtype=np.float32).reshape(3, 2),
    }
    det = window_detections(["a", "b", "c"], outputs, ["LA1-LA2", "LA2-LA3", "B'1-B'2"], threshold=0.5)
    assert det.ids == ("a", "c")
    assert det.peak_channel == ("LA1-LA2", "B'1-B'2")
    assert det.shaft == ("LA", "B'")
    np.testing.assert_array_equal(det.embedding, outputs["embedding"][[0, 2]])


def test_bad_detections_are_refused() -> None:
    with pytest.raises(ValueError, match="ids must be unique"):
        Detections(("a", "a"), np.zeros((2, 2)), np.ones(2), ("x", "x"), ("s", "s"), np.zeros(2))
    with pytest.raises(ValueError, match="probability has 1 rows, expected 2"):
        Detections(("a", "b"), np.zeros((2, 2)), np.ones(1), ("x", "x"), ("s", "s"), np.zeros(2))
    det, _ = detections([("A", 10, 1.0)])
    with pytest.raises(ValueError, match="background: expected at least 2 embeddings of dimension 8"):
        cluster_detections(det, background=np.zeros((5, 3)))
