"""One round of the labeling loop: (labels, pool, serving model) -> (a model, a ranking).

The retraining job (:mod:`ls_backend.retrain`: windows from the window stores, the ranking pushed to Label Studio)
and the replay benchmark (:mod:`ls_backend.active.replay`: windows in memory, an oracle's labels) both train with
:func:`learn` and rank with :func:`rank` (:func:`learn_and_rank` is the two in a row), so what the benchmark measures
is what clinicians get.

* :func:`learn`: a candidate is trained (warm from the serving model when there is one) with confident
  pseudo-labels from unlabeled windows, scored against the serving model on a held-back slice of the labels, and
  replaces it only when it is not worse.
* :func:`rank`: the model (or, before any, the classical transient detector) scores the unlabeled pool batch by batch,
  and the strategy ranks it from a :class:`~ls_backend.active.inputs.PoolView` holding everything a strategy may read:
  probabilities (or MC-dropout draws), embeddings, the detector's score, and the labeled windows' embeddings and labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .active.inputs import PoolView
from .active.ranking import MC_DRAWS
from .active.strategies import Ranking, RngLike, make_strategy, parse_strategy
from .active.transients import TransientDetector, cold_start_arrays, flat_features, robust_statistics
from .labels import is_spike
from .model.estimator import SpikeDetector
from .model.metrics import auprc
from .model.training import PseudoLabelParams, fit_with_pseudo_labels

logger = logging.getLogger(__name__)

NEEDS_DRAWS = frozenset({"bald", "qbc"})
MODEL_FREE = frozenset({"random", "kcenter", "kmeans", "mixed", "ranked_batch", "cold_start"})  # rank before a model
SCORING_BATCH = 256  # windows per forward pass over the pool, in the retraining and the replay alike
PSEUDO_POOL = 500  # unlabeled windows offered to pseudo-labelling each round (confident ones join, weight 0.3)


@dataclass(frozen=True)
class Labeled:
    """The labeled windows: ``X`` [n, n_chans, n_times], soft targets ``y`` [n] in [0, 1], ``dense`` [n, n_times]
    per-sample targets (NaN rows where the time course is unknown; None: unknown everywhere), sampled at ``sfreq``;
    ``ids`` [n] name them for the caller; ``weight`` [n] their training weights (None: 1 each, a clinician's window
    label; less for labels a clinician gave a whole group at once, see :mod:`ls_backend.review.answers`). Only
    rows of weight 1 are held back for validation."""

    X: np.ndarray
    y: np.ndarray
    dense: np.ndarray | None = None
    sfreq: float = 256.0
    ids: np.ndarray | None = None  # where they come from: task ids, or pool indices
    weight: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def rows(self, mask: np.ndarray) -> Labeled:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[mask]

        return Labeled(self.X[mask], self.y[mask], pick(self.dense), self.sfreq, pick(self.ids), pick(self.weight))

    def full_weight(self) -> np.ndarray:
        """[n] bool: the rows of weight 1 (every row without ``weight``)."""
        return np.ones(len(self.y), bool) if self.weight is None else np.asarray(self.weight) >= 1

    def id_set(self) -> set:
        """The ``ids`` as a set (empty without ids)."""
        return set() if self.ids is None else set(self.ids.tolist())


@dataclass(frozen=True)
class Plan:
    """How a round trains. The first model of a project trains ``cold_epochs``; a model warm-started from the serving
    one, and the refit with pseudo-labels, ``warm_epochs``. A candidate must beat the serving model on a held-back
    fifth of each class once the labels number ``min_validation`` (and each class has two). ``pseudo``: how
    unlabeled windows become pseudo-labels (None: never). ``model``: :class:`SpikeDetector` parameters.
    ``encoder``: a pretrained trunk (:mod:`ls_backend.model.pretrain`) that a model trained without a serving one
    starts from (the head fresh, ``cold_epochs``); None: a random initialisation. ``cold_embeddings``: before any
    model, rank with the diversity of the encoder's embeddings instead of the classical detector's features.
    ``min_epoch_windows``: an epoch draws at least this many windows (balanced sampling) however few the labels
    (``SpikeDetector.min_epoch_samples``, unless ``model`` sets it; 0: an epoch is the training set; 256 measured
    ahead of 0 on every synthetic patient, docs/benchmarks.md)."""

    cold_epochs: int = 15
    warm_epochs: int = 5
    min_validation: int = 10
    pseudo: PseudoLabelParams | None = PseudoLabelParams(max_fraction=0.2)  # a fit costs at most ~2x without them
    model: Mapping[str, Any] = field(default_factory=dict)
    encoder: dict[str, Any] | None = None
    cold_embeddings: bool = False
    min_epoch_windows: int = 256

    def detector_params(self) -> dict[str, Any]:
        """The :class:`SpikeDetector` parameters of a fit (``model`` over the plan's own)."""
        return {"min_epoch_samples": self.min_epoch_windows, **self.model}


@dataclass
class Learned:
    """The outcome of :func:`learn`: the ``model`` to serve (the ``candidate`` when ``promoted``, else the serving
    one) and the ``metrics`` of the decision."""

    model: SpikeDetector
    candidate: SpikeDetector
    promoted: bool
    metrics: dict


def learn(
    labeled: Labeled,
    serving: SpikeDetector | None = None,
    plan: Plan = Plan(),
    seed: int = 0,
    X_free: np.ndarray | None = None,
    restart: bool = False,
) -> Learned:
    """Train a candidate on ``labeled`` (and pseudo-labels from the unlabeled windows ``X_free``), keep it if it
    is not worse than ``serving`` on the held-back labels. ``restart``: the candidate starts as a project's first
    model does (from ``plan.encoder``, else afresh), not from ``serving``, which it must still beat."""
    candidate, metrics = train_and_validate(labeled, serving, plan, seed, X_free, restart)
    promoted = serving is None or metrics["candidate_auprc"] >= metrics.get("serving_auprc", -1.0)
    if not promoted:
        logger.info("candidate not better than the serving model (%s): kept the serving model", metrics)
    return Learned(serving if serving is not None and not promoted else candidate, candidate, promoted, metrics)


def pseudo_label_pool(unlabeled: list, n: int = PSEUDO_POOL, seed: int = 0) -> list:
    """The unlabeled windows (ids, sorted) offered to pseudo-labelling: a seeded draw of ``n``."""
    if not unlabeled or n <= 0:
        return []
    return sorted(np.random.default_rng(seed).choice(unlabeled, min(n, len(unlabeled)), replace=False).tolist())


def validation_rows(y: np.ndarray, min_labels: int, rng: np.random.Generator) -> np.ndarray:
    """A stratified fifth of each class held back (at least one), once there are ``min_labels`` labels and at least
    two of each class: never the only example of a class, which the model could then not learn."""
    hard = is_spike(y)
    held = np.zeros(len(y), bool)
    if len(y) < min_labels or min(hard.sum(), (~hard).sum()) < 2:
        return held
    for cls in (True, False):
        rows = np.flatnonzero(hard == cls)
        held[rng.choice(rows, max(1, len(rows) // 5), replace=False)] = True
    return held


def train_and_validate(
    labeled: Labeled,
    serving: SpikeDetector | None,
    plan: Plan = Plan(),
    seed: int = 0,
    X_free: np.ndarray | None = None,
    restart: bool = False,
) -> tuple[SpikeDetector, dict]:
    """Fit a candidate (warm from the serving model unless ``restart``) and score both on a held-back slice of the
    labels.

    With unlabeled windows ``X_free`` and labels of both classes, confident ones join training as pseudo-labels
    (recomputed every run, never instead of a human label, never in the validation slice); with
    ``consistency_weight`` in ``plan.model``, every fit also learns from them by consistency."""
    hard = is_spike(labeled.y)
    full = labeled.full_weight()
    validation = np.zeros(len(labeled), bool)
    validation[full] = validation_rows(labeled.y[full], plan.min_validation, np.random.default_rng(seed))
    train = labeled.rows(~validation)
    warm = serving if not restart and serving is not None and serving.n_times_ == labeled.X.shape[2] else None
    epochs = plan.warm_epochs if warm is not None else plan.cold_epochs
    init = warm if warm is not None else plan.encoder
    candidate = SpikeDetector(**{**plan.detector_params(), "sfreq": labeled.sfreq, "seed": seed, "epochs": epochs})
    metrics: dict = {"n_train": len(train), "n_validation": int(validation.sum())}
    both = is_spike(train.y).any() and not is_spike(train.y).all()
    if X_free is not None and len(X_free) and plan.pseudo is not None and both:
        candidate, rounds = fit_with_pseudo_labels(
            candidate,
            train.X,
            train.y,
            X_free,
            rounds=1,
            params=plan.pseudo,
            sample_weight=train.weight,
            init_from=init,
            dense_targets=train.dense,
            refit_epochs=plan.warm_epochs,
        )
        metrics["n_pseudo_labels"] = rounds[-1].n_pseudo_positive + rounds[-1].n_pseudo_negative
    else:
        candidate.fit(train.X, train.y, train.weight, dense_targets=train.dense, init_from=init, X_unlabeled=X_free)
    metrics["background_shift"] = candidate.background_shift_
    if validation.any():
        X_val = labeled.X[validation]
        metrics["candidate_auprc"] = auprc(hard[validation], candidate.predict_proba(X_val))
        if serving is not None:
            metrics["serving_auprc"] = auprc(hard[validation], serving.predict_proba(X_val))
    else:
        metrics["candidate_auprc"] = 0.0
        if min(hard.sum(), (~hard).sum()) >= 2:  # too few labels to hold some back: cross-validate instead
            metrics["cv_auprc"] = cross_validated_auprc(labeled, init, plan, seed)
    return candidate, metrics


def cross_validated_auprc(
    labeled: Labeled, init: SpikeDetector | dict | None, plan: Plan = Plan(), seed: int = 0
) -> float:
    """Out-of-fold AUPRC of a stratified k-fold (k = 3, or the minority count): a quality score while labels are
    too few for a held-back slice (each fit is on a handful of windows: cheap)."""
    hard = is_spike(labeled.y)
    folds = int(min(3, hard.sum(), (~hard).sum()))
    rng = np.random.default_rng(seed)
    fold = np.empty(len(hard), int)
    for cls in (True, False):
        rows = rng.permutation(np.flatnonzero(hard == cls))
        fold[rows] = np.arange(len(rows)) % folds
    proba = np.empty(len(hard))
    for k in range(folds):
        held = fold == k
        part = labeled.rows(~held)
        model = SpikeDetector(**{**plan.detector_params(), "sfreq": labeled.sfreq, "seed": seed})
        model.fit(part.X, part.y, part.weight, dense_targets=part.dense, init_from=init)
        proba[held] = model.predict_proba(labeled.X[held])
    return auprc(hard, proba)


# ---------------------------------------------------------------------------------------------- ranking

OnBatch = Callable[[dict[str, np.ndarray]], None]


class PoolScorer:
    """Per-window outputs over the unlabeled pool, batch by batch: what a strategy reads, never the windows.

    With a ``model``: its probability and embedding (or, for strategies that read them, ``n_draws`` MC-dropout
    draws); always the classical detector's features: its score, and the embeddings where the model gives none
    (without a model but with a pretrained ``embedder``, :class:`~ls_backend.model.pretrain.TrunkEmbedder`: its
    embeddings instead).
    """

    def __init__(
        self,
        model: SpikeDetector | None,
        sfreq: float,
        n_draws: int = 0,
        seed: int = 0,
        embedder: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.model = model
        self.detector = TransientDetector(sfreq=sfreq)
        self.n_draws = n_draws
        self.seed = seed
        self.embedder = embedder if model is None else None
        self._parts: dict[str, list[np.ndarray]] = {"features": []}

    @property
    def model_embeds(self) -> bool:
        return self.model is not None and not self.n_draws

    def add(self, windows: np.ndarray) -> dict[str, np.ndarray] | None:
        """Score a batch; the model's :meth:`SpikeDetector.predict_all` outputs (None without them)."""
        self._keep("features", self.detector.features(windows))
        if self.embedder is not None:
            self._keep("embeddings", self.embedder(windows))
        if self.model is None:
            return None
        if self.n_draws:
            seed = self.seed + len(self._parts["features"])  # one seed per batch
            self._keep("mc_proba", self.model.mc_draws(windows, self.n_draws, seed=seed).T)
            return None
        out = self.model.predict_all(windows)
        self._keep("proba", out["proba"])
        self._keep("embeddings", out["embedding"])
        return out

    def _keep(self, name: str, value: np.ndarray) -> None:
        self._parts.setdefault(name, []).append(np.asarray(value))

    def view(self, labeled: Labeled | None = None, reference_X: np.ndarray | None = None) -> PoolView:
        """The :class:`PoolView` of the scored windows; ``labeled`` gives ``labeled_embeddings`` and ``labeled_y``
        (in the same space as ``embeddings``), ``reference_X`` (the cohort's windows) ``reference_embeddings``."""
        arrays = {name: np.concatenate(parts) for name, parts in self._parts.items() if parts}
        pool_features = arrays.pop("features", np.zeros((0, 1, 2), np.float32))
        statistics = robust_statistics(pool_features) if len(pool_features) else None  # once: pool and labels
        cold = cold_start_arrays(pool_features, self.detector, statistics)
        arrays["detector_score"], arrays["detector_features"] = cold["detector_score"], cold["embeddings"]
        detector_space = not self.model_embeds and self.embedder is None  # the embeddings are the detector's features
        if detector_space:
            arrays["embeddings"] = cold["embeddings"]
        extra: dict[str, np.ndarray] = {}
        if labeled is not None and len(labeled):
            raw = self.detector.features(labeled.X)
            features = flat_features(raw)
            extra["labeled_y"], extra["labeled_detector_features"] = labeled.y, features
            if statistics is not None:
                extra["labeled_detector_score"] = self.detector.score_features(raw, statistics)
            extra["labeled_embeddings"] = features if detector_space else self.embed(labeled.X)
        if reference_X is not None and self.model is not None:
            extra["reference_embeddings"] = self.model.embed(reference_X)
        return PoolView(**arrays, **extra, n_windows=len(cold["detector_score"]))

    def embed(self, X: np.ndarray) -> np.ndarray:
        """Windows in the space of the pool's ``embeddings``."""
        if self.model is not None and self.model_embeds:
            return self.model.embed(X)
        if self.embedder is not None:
            return self.embedder(X)
        return self.detector_features(X)

    def detector_features(self, X: np.ndarray) -> np.ndarray:
        """Windows in the classical detector's feature space (the pool's ``detector_features``)."""
        return flat_features(self.detector.features(X))


def rank(
    model: SpikeDetector | None,
    batches: Iterable[np.ndarray],
    labeled: Labeled | None,
    strategy: str,
    batch_size: int,
    rng: RngLike = 0,
    sfreq: float = 256.0,
    reference_X: np.ndarray | None = None,
    on_batch: OnBatch | None = None,
    embedder: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Ranking:
    """Rank the unlabeled windows arriving in ``batches`` (in that order) for ``strategy``; before any model the
    cold-start strategy ranks instead of a strategy that needs one, with the diversity of ``embedder``'s embeddings
    where one is given (:func:`cold_embedder`). ``on_batch`` receives each batch's model outputs (pre-annotations
    are made from them)."""
    name, base = strategy, parse_strategy(strategy)[0]
    if model is None and base not in MODEL_FREE:
        name = base = "cold_start"
    rng = np.random.default_rng(rng)
    seed = int(rng.integers(2**31))
    scorer = PoolScorer(model, sfreq, MC_DRAWS if base in NEEDS_DRAWS else 0, seed, embedder)
    for windows in batches:
        out = scorer.add(windows)
        if on_batch is not None and out is not None:
            on_batch(out)
    view = scorer.view(labeled, reference_X if base == "transfer" else None)
    return make_strategy(name).rank(view, batch_size=batch_size, rng=rng)


def cold_embedder(plan: Plan) -> Callable[[np.ndarray], np.ndarray] | None:
    """Before any model: window embeddings from the plan's pretrained encoder, when it has one and
    ``plan.cold_embeddings`` asks for them (else None: the classical detector's features)."""
    if plan.encoder is None or not plan.cold_embeddings:
        return None
    from .model.pretrain import TrunkEmbedder

    return TrunkEmbedder(plan.encoder, plan.model)


def in_batches(X: np.ndarray, size: int = SCORING_BATCH) -> Iterator[np.ndarray]:
    """Consecutive slices of ``size`` windows."""
    return (X[first : first + size] for first in range(0, len(X), size))


def learn_and_rank(
    labeled: Labeled,
    pool_X: np.ndarray,
    serving: SpikeDetector | None,
    strategy: str,
    batch_size: int,
    plan: Plan = Plan(),
    seed: int = 0,
    X_free: np.ndarray | None = None,
    reference_X: np.ndarray | None = None,
    rng: RngLike = None,
) -> tuple[Learned, Ranking]:
    """:func:`learn` on the labels, then :func:`rank` of the unlabeled windows ``pool_X`` by the model it serves
    (``rng``: the ranking's randomness, default ``seed``)."""
    learned = learn(labeled, serving, plan, seed, X_free)
    rng = seed if rng is None else rng
    ranking = rank(learned.model, in_batches(pool_X), labeled, strategy, batch_size, rng, labeled.sfreq, reference_X)
    return learned, ranking
