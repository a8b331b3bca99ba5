"""Active-learning strategies: each ranks the unlabeled pool, best window to label first.

Every strategy follows the scikit-learn contract (``__init__`` only stores parameters) and has one method,
``rank(pool, batch_size, rng) -> Ranking``. ``batch_size`` is how many windows are chosen together: batch-mode
strategies (kcenter, kmeans, mixed, ranked_batch, cold_start, transfer) choose the first ``batch_size`` jointly, so
the batch holds no near-duplicates; the rest of the order is a cheaper continuation. The reference strategies (random,
entropy, margin, bald, qbc) rank window by window and ignore it.

The ranking's ``score`` is the normalised rank (``order[i]`` gets ``i / (n - 1)``), so it lies in [0, 1], is lower
for what to label first, and Label Studio's "lowest score first" reproduces ``order`` exactly inside every cluster.
``cluster`` is the diversity group Label Studio balances (it serves the least-labeled cluster first); strategies
without groups put every window in cluster 0. Group-based strategies order the pool round-robin over their clusters,
which is also what Label Studio does with them.

Use :func:`make_strategy` (``STRATEGIES`` lists the names); ``"mixed"`` is the default.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from .diversity import (
    DuplicateFilter,
    calibrated_prior,
    duplicate_radius,
    k_center_greedy,
    kmeans,
    nearest,
    nearest_distance,
    neighbour_vote,
    round_robin,
    typicality,
)
from .inputs import PoolView
from .measures import (
    binary_entropy,
    domain_drift,
    embedding_drift,
    margin_uncertainty,
    mutual_information,
    vote_entropy,
)

logger = logging.getLogger(__name__)

RngLike = np.random.Generator | int | None
DEFAULT_STRATEGY = "mixed"


@dataclass(frozen=True)
class Ranking:
    """A ranked pool: ``order`` (pool indices, best first), ``score`` [n] in [0, 1] (lower = label first, strictly
    increasing along ``order``), ``cluster`` [n] (diversity group), the strategy ``name`` and the ``batch_size``
    chosen jointly (``order[:batch_size]`` is the batch)."""

    order: np.ndarray
    score: np.ndarray
    cluster: np.ndarray
    name: str
    batch_size: int

    @classmethod
    def from_order(cls, order: np.ndarray, name: str, batch_size: int, cluster: np.ndarray | None = None) -> Ranking:
        """Scores from positions in ``order`` (a permutation of the pool)."""
        order = np.asarray(order, np.int64)
        n = len(order)
        if not np.array_equal(np.sort(order), np.arange(n)):
            raise ValueError(f"{name}: order must be a permutation of the {n} pool indices")
        score = np.empty(n)
        score[order] = np.arange(n) / max(n - 1, 1)
        cluster = np.zeros(n, np.int64) if cluster is None else np.asarray(cluster, np.int64)
        return cls(order, score, cluster, name, min(batch_size, n))

    @property
    def batch(self) -> np.ndarray:
        """Pool indices of the batch (the first ``batch_size`` of ``order``)."""
        return self.order[: self.batch_size]


def descending(utility: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices by decreasing utility; ties broken at random (reproducibly with the same ``rng``)."""
    return np.lexsort((rng.random(len(utility)), -np.asarray(utility)))


class Strategy(BaseEstimator):
    """Base class: parameters in ``__init__`` (``get_params``, ``set_params``, repr: scikit-learn's
    :class:`~sklearn.base.BaseEstimator`), :meth:`rank` does the work."""

    name: ClassVar[str] = "strategy"

    def rank(self, pool: PoolView, batch_size: int = 10, rng: RngLike = None) -> Ranking:
        """Rank the pool; ``rng`` is a ``numpy.random.Generator`` or a seed (same seed, same ranking)."""
        if batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
        rng = np.random.default_rng(rng)
        if pool.n == 0:
            return Ranking.from_order(np.zeros(0, np.int64), self.name, batch_size)
        ranking = self._rank(pool, min(batch_size, pool.n), rng)
        logger.debug("%s ranked %d windows (batch %d) from %s", self.name, pool.n, batch_size, pool.fields_given())
        return ranking

    def _rank(self, pool: PoolView, batch_size: int, rng: np.random.Generator) -> Ranking:
        raise NotImplementedError


class Random(Strategy):
    """Uniformly random order: the reference every other strategy must beat."""

    name = "random"

    def _rank(self, pool: PoolView, batch_size: int, rng: np.random.Generator) -> Ranking:
        return Ranking.from_order(rng.permutation(pool.n), self.name, batch_size)


class _UtilityStrategy(Strategy):
    """Order by one per-window utility (highest first), no groups."""

    def utility(self, pool: PoolView) -> np.ndarray:
        raise NotImplementedError

    def _rank(self, pool: PoolView, batch_size: int, rng: np.random.Generator) -> Ranking:
        return Ranking.from_order(descending(self.utility(pool), rng), self.name, batch_size)


class Entropy(_UtilityStrategy):
    """Highest predictive entropy first (p near 0.5); uses ``proba`` or the mean of the MC / committee draws."""

    name = "entropy"

    def utility(self, pool: PoolView) -> np.ndarray:
        return binary_entropy(_model_proba(pool, self.name))


class Margin(_UtilityStrategy):
    """Smallest margin between the two class probabilities first (same order as entropy for two classes)."""

    name = "margin"

    def utility(self, pool: PoolView) -> np.ndarray:
        return margin_uncertainty(_model_proba(pool, self.name))


class BALD(_UtilityStrategy):
    """Highest mutual information between prediction and weights first: entropy of the mean minus the mean entropy
    of the MC-dropout draws ``mc_proba`` [n, S] (:meth:`SpikeDetector.mc_draws`, transposed; see
    :class:`~ls_backend.loop.PoolScorer`)."""

    name = "bald"

    def utility(self, pool: PoolView) -> np.ndarray:
        return mutual_information(pool.require(self.name, "mc_proba"))


class QueryByCommittee(_UtilityStrategy):
    """Most committee disagreement first. ``kind="vote_entropy"``: entropy of the members' hard votes (ties broken by
    the KL disagreement); ``"kl"``: mean KL divergence of each member from the consensus. The committee is
    ``committee_proba`` (bootstrap or snapshot models), else the MC-dropout draws."""

    name = "qbc"
    KINDS: ClassVar[tuple[str, ...]] = ("vote_entropy", "kl")

    def __init__(self, kind: str = "vote_entropy", threshold: float = 0.5):
        self.kind = kind
        self.threshold = threshold

    def utility(self, pool: PoolView) -> np.ndarray:
        if self.kind not in self.KINDS:
            raise ValueError(f"{self.name}: kind must be one of {self.KINDS}, got {self.kind!r}")
        draws = pool.draws()
        if draws is None:
            raise ValueError(
                f"{self.name} needs PoolView.committee_proba [n, n_members] (or mc_proba), which is missing"
            )
        kl = mutual_information(draws)
        if self.kind == "kl":
            return kl
        return vote_entropy(draws, self.threshold) + 1e-3 * kl  # KL < 1 bit: only breaks ties between vote counts


class KCenter(Strategy):
    """Greedy core-set over ``embeddings``: each pick is the window farthest from everything labeled or picked.

    The batch covers the embedding space (it favours outliers: rare events and artifacts); the rest follows by
    decreasing distance to the labeled windows and the batch. Cluster = the batch window each window is nearest to.
    """

    name = "kcenter"

    def _rank(self, pool: PoolView, batch_size: int, rng: np.random.Generator) -> Ranking:
        emb = pool.require(self.name, "embeddings")
        picks, min_dist, owner = k_center_greedy(emb, batch_size, pool.labeled_embeddings)
        rest = np.setdiff1d(np.arange(pool.n), picks)
        order = np.concatenate([picks, rest[descending(min_dist[rest], rng)]])
        return Ranking.from_order(order, self.name, batch_size, _compact(owner))


class KMeansDiversity(Strategy):
    """k-means groups over ``embeddings`` (``n_clusters``, default ``batch_size``); inside each, the most typical
    window first (density, TypiClust), times the model's entropy when there is a model. The order takes one window
    per group in turn, groups with the fewest labeled windows first."""

    name = "kmeans"

    def __init__(self, n_clusters: int | None = None, typicality_weight: float = 1.0, n_neighbors: int = 20):
        self.n_clusters = n_clusters
        self.typicality_weight = typicality_weight
        self.n_neighbors = n_neighbors

    def _rank(self, pool: PoolView, batch_size: int, rng: np.random.Generator) -> Ranking:
        pool.require(self.name, "embeddings")
        groups = _Groups.fit(pool, self.n_clusters or batch_size, rng, self.n_neighbors)
        utility = groups.typicality**self.typicality_weight * _uncertainty_or_one(pool)
        order = round_robin(groups.labels, utility, groups.priority(utility))
        return Ranking.from_order(order, self.name, batch_size, groups.labels)


class Mixed(Strategy):
    """The default: uncertainty and diversity, class-balanced, in batch mode.

    1. Utility = model uncertainty (entropy of the spike probability; ``uncertainty="bald"`` uses the MC draws)
       times typicality ``** density_weight`` (dense regions first: no outliers). Without a model the utility is
       the typicality alone.
    2. Class balance: spikes are rare, so part of each batch goes to likely positives: ``positive_share`` of the
       batch, fewer when the labels already hold that share of positives. Likely by the model's ``proba`` once the
       labels hold ``trust_after_positives`` spikes of this patient; before that (no model, or a cohort model that
       has seen none of this patient's spikes) by the classical detector's score where the pool has it, corrected
       by the labels around each window in the detector's feature space (``detector_features``;
       :func:`~ls_backend.active.diversity.neighbour_vote` over ``search_neighbors`` neighbours, None: off): near a
       labeled spike more likely, near a labeled artifact less, so the search for the first spikes leaves the
       artifacts the detector also scores high; and the detector's score counts for less where its likeliest
       windows were labeled artifacts (:func:`~ls_backend.active.diversity.calibrated_prior`).
    3. The rest of the batch goes round-robin over k-means groups of ``embeddings`` (``n_clusters``, default
       ``batch_size``), groups with the fewest labels first, best utility inside each.
    4. No near-duplicates: a window closer than the ``duplicate_quantile`` of pairwise distances to a window already
       in the batch (or labeled) is skipped.
    5. With a model and ``candidate_factor``, step 3 draws from the ``candidate_factor x batch_size`` most useful
       windows only (uncertainty first, then diversity among them, as Cluster-Margin does).
    The rest of the pool follows round-robin over the groups. The batch's windows get groups of their own (ids after
    the k-means ones), so that Label Studio's least-labeled-cluster rule serves the batch first, in its order.
    """

    name = "mixed"
    UNCERTAINTIES: ClassVar[tuple[str, ...]] = ("entropy", "bald")

    def __init__(
        self,
        n_clusters: int | None = None,
        positive_share: float = 0.25,
        density_weight: float = 1.0,
        duplicate_quantile: float = 0.02,
        uncertainty: str = "entropy",
        n_neighbors: int = 20,
        trust_after_positives: int = 10,
        candidate_factor: float | None = 4.0,
        search_neighbors: int | None = 20,
    ):
        self.n_clusters = n_clusters
        self.positive_share = positive_share
        self.density_weight = density_weight
        self.duplicate_quantile = duplicate_quantile
        self.uncertainty = uncertainty
        self.n_neighbors = n_neighbors
        self.trust_after_positives = trust_after_positives
        self.candidate_factor = candidate_factor
        self.search_neighbors = search_neighbors

    def _check_params(self) -> None:
        if not 0 <= self.positive_share <= 1:
            raise ValueError(f"{self.name}: positive_share must lie in [0, 1], got {self.positive_share}")
        if self.uncertainty not in self.UNCERTAINTIES:
            raise ValueError(f"{self.name}: uncertainty must be one of {self.UNCERTAINTIES}, got {self.uncertainty!r}")

    def _rank(self, pool: PoolView, batch_size: int, rng: np.random.Generator) -> Ranking:
        self._check_params()
        groups = _Groups.fit(pool, self.n_clusters or batch_size, rng, self.n_neighbors)
        utility = groups.typicality**self.density_weight * self._uncertainty(pool)
        emb = pool.embeddings
        radius = 0.0 if emb is None else duplicate_radius(emb, self.duplicate_quantile, rng)
        batch = DuplicateFilter(emb, radius, known=pool.labeled_embeddings)
        positive = self._positive_likelihood(pool)
        if positive is not None:
            batch.take(descending(positive + 1e-6 * utility, rng), self._positive_quota(pool, batch_size))
        n_positive = len(batch.accepted)
        by_group = round_robin(groups.labels, utility, groups.priority(utility))
        batch.take(self._candidates(pool, by_group, utility, batch_size), batch_size - n_positive)
        if len(batch.accepted) < batch_size:  # everything left is a near-duplicate: fill anyway
            batch.filter_off()
            batch.take(by_group, batch_size - len(batch.accepted))
        picked = np.array(batch.accepted, np.int64)
        order = np.concatenate([picked, by_group[~np.isin(by_group, picked)]])
        cluster = groups.labels.copy()
        cluster[picked] = groups.n_groups + np.arange(len(picked))
        return Ranking.from_order(order, self.name, batch_size, cluster)

    def _candidates(self, pool: PoolView, by_group: np.ndarray, utility: np.ndarray, batch_size: int) -> np.ndarray:
        """``by_group`` restricted to the most useful windows (step 5), or as it is."""
        if not self.candidate_factor or pool.mean_proba() is None:
            return by_group
        n = max(batch_size, math.ceil(self.candidate_factor * batch_size))
        top = np.zeros(len(utility), bool)
        top[np.argsort(-utility, kind="stable")[:n]] = True
        return by_group[top[by_group]]

    def _uncertainty(self, pool: PoolView) -> np.ndarray:
        draws = pool.draws()
        if self.uncertainty == "bald" and draws is not None:
            return mutual_information(draws)
        return _uncertainty_or_one(pool)

    def _positive_likelihood(self, pool: PoolView) -> np.ndarray | None:
        proba = pool.mean_proba()
        n_positives = 0 if pool.labeled_y is None else int(np.sum(pool.labeled_y >= 0.5))
        if pool.detector_score is not None and (proba is None or n_positives < self.trust_after_positives):
            return self._searched(pool, pool.detector_score)
        return proba

    def _searched(self, pool: PoolView, prior: np.ndarray) -> np.ndarray:
        """``prior`` corrected by the labeled windows around each window in the detector's feature space (step 2),
        after :func:`~ls_backend.active.diversity.calibrated_prior` by the labels' verdict on the detector."""
        if not self.search_neighbors or pool.detector_features is None or pool.labeled_detector_features is None:
            return prior
        y = pool.require(self.name, "labeled_y")
        if pool.labeled_detector_score is not None:
            prior = calibrated_prior(prior, pool.labeled_detector_score, y)
        return neighbour_vote(pool.detector_features, pool.labeled_detector_features, y, prior, self.search_neighbors)

    def _positive_quota(self, pool: PoolView, batch_size: int) -> int:
        """Windows of this batch reserved for likely positives: ``positive_share`` of the batch, fewer when that many
        would take the labeled positives past ``positive_share`` of all labels."""
        labels = np.zeros(0) if pool.labeled_y is None else pool.labeled_y
        wanted = math.ceil(self.positive_share * (len(labels) + batch_size) - 1e-9) - int(np.sum(labels >= 0.5))
        return int(np.clip(wanted, 0, math.ceil(self.positive_share * batch_size - 1e-9)))


class RankedBatch(Strategy):
    """Ranked batch mode (Cardoso et al. 2017): each pick maximises
    ``alpha * (1 - similarity) + (1 - alpha) * entropy``, where similarity ``1 / (1 + distance / median distance)``
    is to the nearest labeled or already picked window and ``alpha = n_unlabeled / (n_unlabeled + n_labeled)``:
    diversity first while few windows are labeled, uncertainty more and more afterwards. The rest of the pool
    follows by the same utility after the batch."""

    name = "ranked_batch"

    def _rank(self, pool: PoolView, batch_size: int, rng: np.random.Generator) -> Ranking:
        emb, uncertainty = pool.require(self.name, "embeddings"), _uncertainty_or_one(pool)
        n_labeled = 0 if pool.labeled_embeddings is None else len(pool.labeled_embeddings)
        alpha = pool.n / (pool.n + n_labeled)
        scale = max(duplicate_radius(emb, 0.5, rng), 1e-12)
        min_dist = nearest_distance(emb, pool.labeled_embeddings)
        jitter = 1e-9 * rng.random(pool.n)  # random tie-breaks
        picks: list[int] = []
        for _ in range(batch_size + 1):  # one more pass scores the rest of the pool against the whole batch
            utility = alpha * (1 - 1 / (1 + min_dist / scale)) + (1 - alpha) * uncertainty + jitter
            utility[picks] = -np.inf
            if len(picks) == batch_size:
                break
            picks.append(int(np.argmax(utility)))
            min_dist = np.minimum(min_dist, nearest_distance(emb, emb[picks[-1:]]))
        rest = descending(utility, rng)[: pool.n - batch_size]
        return Ranking.from_order(np.concatenate([picks, rest]), self.name, batch_size)


class ColdStart(Mixed):
    """Before any model: the first batch holds likely spikes AND covers the recording.

    ``positive_share`` of the batch (default half) goes to the highest classical-detector scores (``detector_score``,
    see :mod:`ls_backend.active.transients`) without near-duplicates; the rest to the most typical window of each
    k-means group of ``embeddings`` (an untrained or cohort model's), so every kind of background is seen once.
    Model probabilities in the pool are ignored.
    """

    name = "cold_start"

    def __init__(
        self,
        n_clusters: int | None = None,
        positive_share: float = 0.5,
        density_weight: float = 1.0,
        duplicate_quantile: float = 0.02,
        n_neighbors: int = 20,
    ):
        super().__init__(n_clusters, positive_share, density_weight, duplicate_quantile, "entropy", n_neighbors)

    def _rank(self, pool: PoolView, batch_size: int, rng: np.random.Generator) -> Ranking:
        pool.require(self.name, "detector_score")
        without_model = PoolView(
            embeddings=pool.embeddings,
            detector_score=pool.detector_score,
            labeled_embeddings=pool.labeled_embeddings,
            labeled_y=pool.labeled_y,
        )
        return super()._rank(without_model, batch_size, rng)


class TransferAware(Strategy):
    """For a new patient starting from a cohort model: favour the windows where the patient differs from the cohort.

    Drift (in [0, 1], about 0.5 inside the cohort) of each window's embedding from the ``reference_embeddings`` (the
    cohort's windows): ``drift="knn"`` compares the distance to the nearest cohort windows with the cohort's own
    spread (:func:`~ls_backend.active.measures.embedding_drift`), ``"classifier"`` is a density ratio from a
    patient-vs-cohort classifier (:func:`~ls_backend.active.measures.domain_drift`). The model's confidence counts only
    as far as the window looks like the cohort: with excess drift ``e = drift_weight * clip(2 * drift - 1, 0, 1)``,
    utility = ``1 - (1 - entropy) * (1 - e)``, ties broken by drift (drift alone without a model). The batch skips
    near-duplicates (a drifted patient-specific pattern is often many similar windows).
    """

    name = "transfer"

    DRIFTS: ClassVar[tuple[str, ...]] = ("knn", "classifier")

    def __init__(
        self,
        drift: str = "knn",
        drift_weight: float = 1.0,
        n_neighbors: int = 10,
        max_reference: int = 5000,
        duplicate_quantile: float = 0.02,
    ):
        self.drift = drift
        self.drift_weight = drift_weight
        self.n_neighbors = n_neighbors
        self.max_reference = max_reference
        self.duplicate_quantile = duplicate_quantile

    def drift_from_cohort(self, pool: PoolView, rng: RngLike = None) -> np.ndarray:
        """Drift of every pool window from the cohort, in [0, 1] (median about 0.5 when there is none)."""
        emb = pool.require(self.name, "embeddings")
        reference = pool.require(self.name, "reference_embeddings")
        if self.drift not in self.DRIFTS:
            raise ValueError(f"{self.name}: drift must be one of {self.DRIFTS}, got {self.drift!r}")
        rng = np.random.default_rng(rng)
        if self.drift == "classifier":
            return domain_drift(emb, reference, self.max_reference, rng)
        return embedding_drift(emb, reference, self.n_neighbors, self.max_reference, rng)

    def trusted_uncertainty(self, uncertainty: np.ndarray, drift: np.ndarray) -> np.ndarray:
        """Uncertainty raised where the window drifts beyond the cohort's own spread (probabilistic OR)."""
        excess = self.drift_weight * np.clip(2 * drift - 1, 0, 1)
        return 1 - (1 - uncertainty) * (1 - excess)

    def _rank(self, pool: PoolView, batch_size: int, rng: np.random.Generator) -> Ranking:
        drift = self.drift_from_cohort(pool, rng)
        proba = pool.mean_proba()
        utility = drift if proba is None else self.trusted_uncertainty(binary_entropy(proba), drift) + 1e-3 * drift
        logger.info(
            "transfer: median drift from the cohort %.2f (0.5: like the cohort), %.0f%% of windows above 0.9",
            np.median(drift),
            100 * np.mean(drift > 0.9),
        )
        order = descending(utility, rng)
        emb = pool.require(self.name, "embeddings")
        radius = duplicate_radius(emb, self.duplicate_quantile, rng)
        batch = DuplicateFilter(emb, radius, known=pool.labeled_embeddings).take(order, batch_size)
        order = np.concatenate([batch, order[~np.isin(order, batch)]]).astype(np.int64)
        return Ranking.from_order(order, self.name, batch_size)


@dataclass
class _Groups:
    """k-means groups of the pool with each window's typicality (one group, typicality 1 without embeddings)."""

    labels: np.ndarray
    typicality: np.ndarray
    labeled_count: np.ndarray  # labeled windows nearest each group's centre

    @property
    def n_groups(self) -> int:
        return len(self.labeled_count)

    @classmethod
    def fit(cls, pool: PoolView, n_clusters: int, rng: np.random.Generator, n_neighbors: int) -> _Groups:
        if pool.embeddings is None:
            return cls(np.zeros(pool.n, np.int64), np.ones(pool.n), np.zeros(1, np.int64))
        labels, centres = kmeans(pool.embeddings, n_clusters, rng)
        counts: np.ndarray = np.zeros(len(centres), np.int64)
        if pool.labeled_embeddings is not None and len(pool.labeled_embeddings):
            counts = np.bincount(nearest(pool.labeled_embeddings, centres)[0], minlength=len(centres))
        return cls(labels, typicality(pool.embeddings, rng, n_neighbors, groups=labels), counts)

    def priority(self, utility: np.ndarray) -> np.ndarray:
        """Rank of each group (lower first): fewest labeled windows, then highest best utility."""
        best = np.full(self.n_groups, -np.inf)
        np.maximum.at(best, self.labels, utility)
        rank = np.empty(self.n_groups, np.int64)
        rank[np.lexsort((-best, self.labeled_count))] = np.arange(self.n_groups)
        return rank


def _model_proba(pool: PoolView, strategy: str) -> np.ndarray:
    proba = pool.mean_proba()
    return pool.require(strategy, "proba") if proba is None else proba


def _uncertainty_or_one(pool: PoolView) -> np.ndarray:
    proba = pool.mean_proba()
    return np.ones(pool.n) if proba is None else binary_entropy(proba)


def _compact(labels: np.ndarray) -> np.ndarray:
    """Relabel to 0..k-1 (e.g. -1 for 'nearest to a labeled window' becomes a group of its own)."""
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        Random,
        Entropy,
        Margin,
        BALD,
        QueryByCommittee,
        KCenter,
        KMeansDiversity,
        Mixed,
        RankedBatch,
        ColdStart,
        TransferAware,
    )
}


def parse_strategy(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``"name:param=value,param=value"`` -> the name and its parameters (values: ints, floats,
    ``none``, ``true``/``false``), e.g. ``"mixed:trust_after_positives=3,search_neighbors=none"``."""
    name, _, rest = spec.partition(":")
    try:
        return name.strip(), parse_params(rest)
    except ValueError as err:
        raise ValueError(f"strategy {spec!r}: expected name:param=value,param=value, {err}") from None


def parse_params(text: str) -> dict[str, Any]:
    """``"param=value,param=value"`` -> a dict (values: ints, floats, ``none``, ``true``/``false``, else text)."""
    params: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"got {item!r}")
        params[key.strip()] = _value(value.strip())
    return params


def _value(text: str) -> Any:
    special = {"none": None, "true": True, "false": False}
    if text.lower() in special:
        return special[text.lower()]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def make_strategy(name: str = DEFAULT_STRATEGY, **params: Any) -> Strategy:
    """A strategy by registry name (see ``STRATEGIES``) or spec (:func:`parse_strategy`) with its parameters; clear
    errors for unknown ones."""
    name, spec_params = parse_strategy(name)
    params = {**spec_params, **params}
    if name not in STRATEGIES:
        raise ValueError(f"unknown active-learning strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    cls = STRATEGIES[name]
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise ValueError(
            f"strategy {name!r} has no parameter(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(cls._get_param_names()) or 'none'}"
        )
    return cls(**params)
