"""Geometry over embeddings: k-means groups, typicality, greedy k-center, near-duplicate suppression.

Everything works on ``[n, d]`` float arrays and costs ``O(n * d)`` per selected window (no ``n x n`` matrix), so it
runs on tens of thousands of windows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)

_FULL_KMEANS_MAX = 5000  # above this many windows, mini-batch k-means


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def kmeans(x: np.ndarray, n_clusters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels ``[n]`` and centres ``[k, d]`` (k at most the number of distinct points)."""
    n_clusters = int(max(1, min(n_clusters, len(np.unique(x, axis=0)))))
    cls = KMeans if len(x) <= _FULL_KMEANS_MAX else MiniBatchKMeans
    # one OpenMP thread: the problem is small, and ranking runs beside training, where more threads thrash
    with threadpool_limits(limits=1, user_api="openmp"):
        model = cls(n_clusters=n_clusters, n_init=3, random_state=_seed(rng)).fit(x)
    return model.labels_.astype(np.int64), model.cluster_centers_


def typicality(
    x: np.ndarray,
    rng: np.random.Generator,
    n_neighbors: int = 20,
    max_reference: int = 2000,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Density of each point in (0, 1]: inverse mean distance to its ``n_neighbors`` nearest points (TypiClust),
    against a random subsample of ``max_reference`` points, divided by the maximum. With ``groups``, within each
    group (a small cluster is then not judged by its distance to the big ones)."""
    if groups is None:
        return _typicality(x, rng, n_neighbors, max_reference)
    out = np.ones(len(x))
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        out[members] = _typicality(x[members], rng, n_neighbors, max_reference)
    return out


def _typicality(x: np.ndarray, rng: np.random.Generator, n_neighbors: int, max_reference: int) -> np.ndarray:
    n = len(x)
    if n < 3:
        return np.ones(n)
    ref_idx = np.sort(rng.choice(n, min(n, max_reference), replace=False))
    k = max(1, min(n_neighbors, len(ref_idx) - 1))
    dist = NearestNeighbors(n_neighbors=k + 1).fit(x[ref_idx]).kneighbors(x, k + 1)[0]
    in_ref = np.zeros(n, bool)
    in_ref[ref_idx] = True
    # a reference point's first neighbour is itself: drop it; drop the farthest one for the others
    mean_dist = np.where(in_ref, dist[:, 1:].mean(axis=1), dist[:, :-1].mean(axis=1))
    density = 1.0 / (mean_dist + 1e-12 + 1e-6 * np.median(mean_dist))
    return density / density.max()


def nearest(x: np.ndarray, centres: np.ndarray | None, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest row of ``centres`` for each row of ``x`` and the Euclidean distance to it
    (index -1 and distance inf when there are no centres). Memory ``chunk x len(centres)``."""
    index = np.full(len(x), -1, np.int64)
    dist = np.full(len(x), np.inf)
    if centres is None or len(centres) == 0:
        return index, dist
    for lo, d2 in _squared_distances(x, centres, chunk):
        index[lo : lo + len(d2)] = d2.argmin(axis=1)
        dist[lo : lo + len(d2)] = np.sqrt(d2.min(axis=1))
    return index, dist


def _squared_distances(x: np.ndarray, centres: np.ndarray, chunk: int) -> Iterator[tuple[int, np.ndarray]]:
    """Squared Euclidean distances from ``chunk`` rows of ``x`` at a time to every row of ``centres``: (first row,
    ``[rows, len(centres)]``), never negative."""
    c_sq = (centres**2).sum(axis=1)
    for lo in range(0, len(x), chunk):
        block = x[lo : lo + chunk]
        yield lo, np.maximum((block**2).sum(axis=1)[:, None] - 2 * block @ centres.T + c_sq[None, :], 0.0)


def nearest_distance(x: np.ndarray, centres: np.ndarray | None) -> np.ndarray:
    """Distance from each row of ``x`` to its nearest row of ``centres`` (inf when there are none)."""
    return nearest(x, centres)[1]


def neighbour_vote(
    x: np.ndarray,
    labeled_x: np.ndarray,
    labeled_y: np.ndarray,
    prior: np.ndarray,
    n_neighbors: int = 20,
    prior_weight: float = 1.0,
    chunk: int = 4096,
) -> np.ndarray:
    """Each point's probability of being positive from its labeled neighbours, ``prior`` where it has none (the k-NN
    model of active search, Garnett et al. 2012): ``(prior_weight * prior + sum_j w_j y_j) / (prior_weight +
    sum_j w_j)``, with ``w_j = exp(-(d_j / h_j) ** 2)`` for labeled point j at distance ``d_j`` and ``h_j`` the
    distance from j to its ``n_neighbors``-th nearest point of ``x`` (each label speaks for its own neighbourhood,
    whatever the scale of the features). Memory ``chunk x len(labeled_x)``."""
    prior = np.asarray(prior, np.float64)
    if not len(labeled_x) or not len(x):
        return prior
    k = max(1, min(n_neighbors, len(x)))
    scale = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(labeled_x, k)[0][:, -1]
    inv_h2 = 1.0 / np.maximum(scale, 1e-12) ** 2
    y = np.asarray(labeled_y, np.float64)
    out = np.empty(len(x))
    for lo, d2 in _squared_distances(x, labeled_x, chunk):
        weight = np.exp(-d2 * inv_h2[None, :])
        rows = slice(lo, lo + len(d2))
        out[rows] = (prior_weight * prior[rows] + weight @ y) / (prior_weight + weight.sum(axis=1))
    return out


def calibrated_prior(prior: np.ndarray, labeled_prior: np.ndarray, labeled_y: np.ndarray) -> np.ndarray:
    """``prior`` scaled by the positives the labels hold against those the prior promised for them (add-one
    smoothed, never above 1): once the detector's likeliest windows turned out artifacts, the neighbourhood of a
    labeled spike outranks the detector's next artifacts in :func:`neighbour_vote`."""
    ratio = (float(np.sum(labeled_y)) + 1.0) / (float(np.sum(labeled_prior)) + 1.0)
    return np.asarray(prior, np.float64) * min(1.0, ratio)


def _distance_to(x: np.ndarray, point: np.ndarray) -> np.ndarray:
    return np.sqrt(((x - point) ** 2).sum(axis=1))


def k_center_greedy(
    x: np.ndarray, n_select: int, known: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy core-set: repeatedly take the point farthest from everything known or taken so far.

    ``known`` are embeddings already labeled; without them the first pick is the point nearest the mean.
    Returns the picks (in order), each point's distance to its nearest known-or-picked point, and the index of its
    nearest pick (-1 where a known point is nearer).
    """
    min_dist = nearest_distance(x, known)
    owner = np.full(len(x), -1, np.int64)
    picks: list[int] = []
    for j in range(min(n_select, len(x))):
        i = int(np.argmin(_distance_to(x, x.mean(axis=0)))) if np.isinf(min_dist).all() else int(np.argmax(min_dist))
        picks.append(i)
        dist = _distance_to(x, x[i])
        closer = dist < min_dist
        min_dist[closer], owner[closer] = dist[closer], j
    return np.array(picks, np.int64), min_dist, owner


def duplicate_radius(x: np.ndarray, quantile: float, rng: np.random.Generator, n_pairs: int = 20000) -> float:
    """The ``quantile`` of distances between random pairs of points: closer than this counts as a near-duplicate."""
    if len(x) < 2 or quantile <= 0:
        return 0.0
    a, b = rng.integers(len(x), size=(2, n_pairs))
    keep = a != b
    dist = _distance_to(x[a[keep]], x[b[keep]]) if keep.any() else np.zeros(1)
    return float(np.quantile(dist, quantile))


class DuplicateFilter:
    """Accepts points in priority order unless they lie within ``radius`` of one already accepted (or known)."""

    def __init__(self, x: np.ndarray | None, radius: float, known: np.ndarray | None = None):
        self.x, self.radius = x, radius
        self.min_dist = None if x is None else nearest_distance(x, known)
        self.accepted: list[int] = []

    def take(self, candidates: np.ndarray, n_take: int) -> list[int]:
        """Accept up to ``n_take`` of ``candidates`` (walked in order); returns those accepted now."""
        taken: list[int] = []
        taken_set = set(self.accepted)
        for i in candidates:
            if len(taken) >= n_take:
                break
            i = int(i)
            if i in taken_set or (self.min_dist is not None and self.min_dist[i] < self.radius):
                continue
            taken.append(i)
            taken_set.add(i)
            if self.min_dist is not None and self.x is not None:  # x is None only without min_dist
                self.min_dist = np.minimum(self.min_dist, _distance_to(self.x, self.x[i]))
        self.accepted += taken
        return taken

    def filter_off(self) -> None:
        """Accept near-duplicates from now on (when nothing else is left)."""
        self.min_dist = None


def round_robin(cluster: np.ndarray, utility: np.ndarray, cluster_priority: np.ndarray) -> np.ndarray:
    """Order that takes the best remaining window of every cluster in turn (clusters by ascending priority value),
    the way Label Studio serves the least-labeled cluster first. Ties in utility keep index order."""
    by_utility = np.lexsort((np.arange(len(utility)), -utility))
    rank_in_cluster = np.empty(len(utility), np.int64)
    sorted_cluster = cluster[by_utility]
    for c in np.unique(cluster):
        members = by_utility[sorted_cluster == c]
        rank_in_cluster[members] = np.arange(len(members))
    return np.lexsort((np.argsort(by_utility), cluster_priority[cluster], rank_in_cluster))
