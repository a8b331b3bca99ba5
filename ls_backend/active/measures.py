"""Per-window measures in [0, 1] that strategies combine: uncertainty, disagreement, drift from a cohort.

All are for the binary spike / no-spike problem: a probability ``p`` stands for the distribution ``[1 - p, p]``, and
entropies are in bits, so 1 is the most uncertain. For two classes, entropy, margin and least-confidence order windows
identically (all are monotone in ``|p - 0.5|``); they differ only in their values.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

_EPS = 1e-12


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy of ``[1 - p, p]`` in bits (1 at p = 0.5, 0 at 0 and 1)."""
    p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def margin_uncertainty(p: np.ndarray) -> np.ndarray:
    """One minus the margin between the two class probabilities: ``1 - |2p - 1|``."""
    return 1.0 - np.abs(2.0 * np.asarray(p, np.float64) - 1.0)


def mutual_information(draws: np.ndarray) -> np.ndarray:
    """BALD: ``H(mean p) - mean H(p_s)`` over the draws ``[n, S]`` (MC-dropout passes or committee members).

    It is also the mean KL divergence of each draw from the consensus, so query-by-committee's "KL" disagreement
    is this same number. High when the draws are confident but disagree (epistemic uncertainty); a window that every
    draw calls 0.5 scores 0 (aleatoric only).
    """
    draws = np.asarray(draws, np.float64)
    return np.clip(binary_entropy(draws.mean(axis=1)) - binary_entropy(draws).mean(axis=1), 0.0, 1.0)


def vote_entropy(draws: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Entropy (bits) of the committee's hard votes: the share of members with ``p >= threshold``."""
    votes = (np.asarray(draws) >= threshold).mean(axis=1)
    return binary_entropy(votes)


def embedding_drift(
    embeddings: np.ndarray,
    reference: np.ndarray,
    n_neighbors: int = 10,
    max_reference: int = 5000,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """How unlike the reference (cohort) windows each window is, in [0, 1].

    The distance of a window to its ``n_neighbors`` nearest reference windows (mean) is compared with the same
    distance of the reference windows among themselves (leave-one-out): the drift is the share of reference windows
    that sit closer to their own neighbours. About 0.5 for a window drawn like the cohort, near 1 where the patient
    has something the cohort never showed. The reference is subsampled to ``max_reference`` windows.
    """
    rng = np.random.default_rng(rng)
    reference = _subsample(np.asarray(reference, np.float64), max_reference, rng)
    if len(reference) < 2:
        raise ValueError(f"embedding drift needs at least 2 reference windows, got {len(reference)}")
    k = max(1, min(n_neighbors, len(reference) - 1))
    index = NearestNeighbors(n_neighbors=k + 1).fit(reference)
    own = index.kneighbors(reference, k + 1, return_distance=True)[0][:, 1:].mean(axis=1)  # column 0 is the point
    query = index.kneighbors(np.asarray(embeddings, np.float64), k, return_distance=True)[0].mean(axis=1)
    own.sort()
    return np.searchsorted(own, query, side="right") / len(own)


def domain_drift(
    embeddings: np.ndarray, reference: np.ndarray, max_windows: int = 5000, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Density-ratio drift in [0, 1]: a (linear, regularised) classifier told to separate the patient's windows from
    the reference's, with balanced classes; its probability "patient" is ``r / (1 + r)`` for the density ratio
    ``r = p_patient / p_cohort``. About 0.5 where the two overlap; it sees shifts along directions (cheap on any
    number of windows), where :func:`embedding_drift` sees any local novelty."""
    rng = np.random.default_rng(rng)
    embeddings = np.asarray(embeddings, np.float64)
    patient = _subsample(embeddings, max_windows, rng)
    cohort = _subsample(np.asarray(reference, np.float64), max_windows, rng)
    x = np.vstack([patient, cohort])
    y = np.r_[np.ones(len(patient)), np.zeros(len(cohort))]
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
    return model.fit(x, y).predict_proba(embeddings)[:, 1]


def _subsample(x: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= max_rows else x[np.sort(rng.choice(len(x), max_rows, replace=False))]
