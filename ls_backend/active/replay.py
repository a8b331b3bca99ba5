"""Replay the labeling loop with an oracle: how many labels a strategy needs, measured instead of claimed.

One run (:func:`replay`) starts with no label of the target patient (or from a cohort model trained on other
patients), and each round asks a strategy for ``batch_size`` windows of the pool, reveals their true labels,
retrains warm (the previous round's model, a few epochs) and scores the held-out test windows. Before any model
exists, the first batch comes from the strategy itself where it needs no model (random, k-center, k-means, mixed,
ranked batch: diversity over the classical detector's features, likely spikes first) and from ``cold_start``
otherwise. :func:`fully_supervised` is the reference: the same model trained on every pool label.

Everything is a function of its inputs and the seed: the same seed gives the same curve.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..model.estimator import SpikeDetector
from ..model.metrics import auprc, best_threshold, f1_at
from .detector import TransientDetector, cold_start_arrays
from .inputs import PoolView
from .ranking import MC_DRAWS, model_features
from .strategies import STRATEGIES, make_strategy

logger = logging.getLogger(__name__)

MODEL_FREE = frozenset({"random", "kcenter", "kmeans", "mixed", "ranked_batch", "cold_start"})
NEEDS_DRAWS = frozenset({"bald", "qbc"})
MAX_REFERENCE = 2000  # cohort windows embedded for the transfer strategy's drift


@dataclass(frozen=True)
class ReplayData:
    """The target patient's pool (to label) and test windows; ``reference_*`` the other patients' labelled windows
    (the cohort: warm start, and the transfer strategy's drift)."""

    pool_X: np.ndarray
    pool_y: np.ndarray
    test_X: np.ndarray
    test_y: np.ndarray
    pool_dense: np.ndarray | None = None
    reference_X: np.ndarray | None = None
    reference_y: np.ndarray | None = None
    reference_dense: np.ndarray | None = None

    @property
    def n_pool(self) -> int:
        return len(self.pool_y)


@dataclass(frozen=True)
class ReplaySettings:
    """Loop and training parameters. ``model``: :class:`SpikeDetector` parameters shared by every fit (architecture,
    ``samples_per_epoch``, threads); the first fit from scratch runs ``first_epochs``, every later (warm) one
    ``round_epochs`` at ``round_lr``. ``n_draws`` MC-dropout passes feed BALD and QBC."""

    batch_size: int = 20
    budget: int = 200
    first_epochs: int = 8
    round_epochs: int = 3
    round_lr: float = 1e-3
    n_draws: int = MC_DRAWS
    model: dict[str, Any] = field(default_factory=dict)

    def check(self, n_pool: int) -> None:
        if self.batch_size < 1 or self.budget < self.batch_size:
            raise ValueError(f"need 1 <= batch_size <= budget, got batch_size={self.batch_size}, budget={self.budget}")
        if self.budget > n_pool:
            raise ValueError(f"budget {self.budget} exceeds the {n_pool} pool windows of the target patient")

    def rounds(self) -> int:
        return -(-self.budget // self.batch_size)

    def full_epochs(self) -> int:
        """Epochs of the fully supervised reference: the updates the last model of a replay has had."""
        return self.first_epochs + (self.rounds() - 1) * self.round_epochs


@dataclass(frozen=True)
class RoundResult:
    labels: int
    positives: int
    auprc: float
    f1: float  # at the model's threshold (0.5 after prior correction): what a clinician would see
    best_f1: float  # at the best threshold on the test set (optimistic)
    seconds: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def check_strategy(name: str) -> None:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")


def test_scores(model: SpikeDetector, data: ReplayData) -> dict[str, float]:
    """AUPRC and F1 (at 0.5 and best) on the held-out test windows."""
    proba = model.predict_proba(data.test_X)
    return {
        "auprc": auprc(data.test_y, proba),
        "f1": f1_at(data.test_y, proba, model.threshold),
        "best_f1": best_threshold(data.test_y, proba)[1],
    }


def detector_arrays(X: np.ndarray, sfreq: float) -> dict[str, np.ndarray]:
    """Cold-start inputs of every pool window (the pool stands for the recording)."""
    detector = TransientDetector(sfreq=sfreq)
    return cold_start_arrays(detector.features(X), detector)


def query(
    strategy: str,
    model: SpikeDetector | None,
    data: ReplayData,
    cold: dict[str, np.ndarray],
    labeled: np.ndarray,
    n: int,
    settings: ReplaySettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """Pool indices of the next ``n`` windows to label."""
    unlabeled = np.flatnonzero(~labeled)
    name = strategy if model is not None or strategy in MODEL_FREE else "cold_start"
    arrays = {key: value[unlabeled] for key, value in cold.items()}
    labeled_embeddings, reference = cold["embeddings"][labeled], None
    if model is not None and strategy in NEEDS_DRAWS:  # the draws alone: their mean is the probability
        draws = model.mc_draws(data.pool_X[unlabeled], settings.n_draws, seed=int(rng.integers(2**31)))
        arrays["mc_proba"] = draws.T
    elif model is not None:
        arrays |= model_features(model, data.pool_X[unlabeled])
        labeled_embeddings = model.embed(data.pool_X[labeled])
        if strategy == "transfer" and data.reference_X is not None:
            reference = model.embed(_subsample(data.reference_X, MAX_REFERENCE, rng))
    view = PoolView(
        **arrays, labeled_embeddings=labeled_embeddings, labeled_y=data.pool_y[labeled], reference_embeddings=reference
    )
    return unlabeled[make_strategy(name).rank(view, batch_size=n, rng=rng).batch]


def _subsample(X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return X if len(X) <= n else X[np.sort(rng.choice(len(X), n, replace=False))]


def fit_round(
    model: SpikeDetector | None, data: ReplayData, labeled: np.ndarray, settings: ReplaySettings, seed: int
) -> SpikeDetector:
    """Train on the labeled windows: from scratch the first time, else continuing from ``model``."""
    idx = np.flatnonzero(labeled)
    dense = None if data.pool_dense is None else data.pool_dense[idx]
    if model is None:
        fresh = SpikeDetector(**settings.model, epochs=settings.first_epochs, seed=seed)
        return fresh.fit(data.pool_X[idx], data.pool_y[idx], dense_targets=dense)
    warm = model.clone(epochs=settings.round_epochs, lr=settings.round_lr, seed=seed)
    return warm.fit(data.pool_X[idx], data.pool_y[idx], dense_targets=dense, init_from=model)


def replay(
    strategy: str,
    data: ReplayData,
    settings: ReplaySettings,
    seed: int,
    sfreq: float = 256.0,
    cohort: SpikeDetector | None = None,
) -> list[RoundResult]:
    """One learning curve: a :class:`RoundResult` after each round (and at 0 labels when starting from ``cohort``)."""
    check_strategy(strategy)
    settings.check(data.n_pool)
    rng = np.random.default_rng(seed)
    cold = detector_arrays(data.pool_X, sfreq)
    labeled = np.zeros(data.n_pool, bool)
    model, curve = cohort, []
    if cohort is not None:
        curve.append(RoundResult(0, 0, **test_scores(cohort, data), seconds=0.0))
    for r in range(settings.rounds()):
        start = time.perf_counter()
        n = min(settings.batch_size, settings.budget - int(labeled.sum()))
        labeled[query(strategy, model, data, cold, labeled, n, settings, rng)] = True
        model = fit_round(model, data, labeled, settings, seed * 1000 + r)
        curve.append(
            RoundResult(
                int(labeled.sum()),
                int((data.pool_y[labeled] >= 0.5).sum()),
                **test_scores(model, data),
                seconds=time.perf_counter() - start,
            )
        )
        logger.info(
            "%s seed %d: %d labels (%d positive): AUPRC %.3f, F1 %.3f",
            strategy,
            seed,
            curve[-1].labels,
            curve[-1].positives,
            curve[-1].auprc,
            curve[-1].f1,
        )
    return curve


def fully_supervised(data: ReplayData, settings: ReplaySettings, seed: int) -> dict[str, float]:
    """Test scores of the model trained on every pool label (the reference a strategy should approach)."""
    start = time.perf_counter()
    model = SpikeDetector(**settings.model, epochs=settings.full_epochs(), seed=seed)
    model.fit(data.pool_X, data.pool_y, dense_targets=data.pool_dense)
    return {"labels": data.n_pool, **test_scores(model, data), "seconds": time.perf_counter() - start}


def fit_cohort(data: ReplayData, settings: ReplaySettings, seed: int, epochs: int) -> SpikeDetector:
    """The warm-start model: trained on the other patients' windows (``reference_*``) for ``epochs``."""
    if data.reference_X is None or data.reference_y is None:
        raise ValueError("a warm start needs labelled windows of other patients than the target (reference_X, y)")
    model = SpikeDetector(**settings.model, epochs=epochs, seed=seed)
    return model.fit(data.reference_X, data.reference_y, dense_targets=data.reference_dense)
