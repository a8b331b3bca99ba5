"""Replay the labeling loop with an oracle: how many labels a strategy needs, measured instead of claimed.

One run (:func:`replay`) starts with no label of the target patient (or from a cohort model trained on other
patients). Each round labels the batch the last ranking put first (the oracle reveals its true labels), then runs
what the retraining job runs after an annotation: :func:`ls_backend.loop.learn_and_rank` (a candidate trained with
pseudo-labels, kept only if it is not worse than the serving model, and the new ranking of the unlabeled pool), and
scores the serving model on the held-out test windows. The first ranking is the one a new project gets (the strategy
itself where it needs no model, the cold-start strategy otherwise).

The references: :func:`converged_reference` is the ceiling, the same model trained on every pool label for the
number of epochs after which a validation slice of the pool stopped improving; :func:`compute_matched_reference`
trains on every pool label as many windows as the last model of a replay did in its fits
(``Plan.cold_epochs + (rounds - 1) * Plan.warm_epochs`` epochs of ``budget`` windows).

Everything is a function of its inputs and the seed: the same seed gives the same curve.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .active.strategies import Ranking, make_strategy
from .loop import (
    Labeled,
    Learned,
    Plan,
    cold_embedder,
    in_batches,
    learn_and_rank,
    pseudo_label_pool,
    rank,
    validation_rows,
)
from .model.estimator import SpikeDetector
from .model.metrics import auprc, best_threshold, f1_at

logger = logging.getLogger(__name__)

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
    """Loop parameters: ``batch_size`` windows labeled per round up to ``budget`` labels; ``plan``: how each round
    trains (the live retraining's by default); the converged reference trains at most ``reference_epochs`` epochs,
    stopping after ``reference_patience`` epochs without improvement."""

    batch_size: int = 20
    budget: int = 200
    plan: Plan = field(default_factory=Plan)
    reference_epochs: int = 100
    reference_patience: int = 5

    def check(self, n_pool: int) -> None:
        if self.batch_size < 1 or self.budget < self.batch_size:
            raise ValueError(f"need 1 <= batch_size <= budget, got batch_size={self.batch_size}, budget={self.budget}")
        if self.budget > n_pool:
            raise ValueError(f"budget {self.budget} exceeds the {n_pool} pool windows of the target patient")

    def rounds(self) -> int:
        return -(-self.budget // self.batch_size)

    def matched_epochs(self) -> int:
        """Epochs (of ``budget`` windows) of the compute-matched reference: those of the last model's fits."""
        return self.plan.cold_epochs + (self.rounds() - 1) * self.plan.warm_epochs


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
    """A ValueError unless ``name`` is a strategy, or a strategy spec with valid parameters
    (``mixed:search_neighbors=none``)."""
    make_strategy(name)


def test_scores(model: SpikeDetector, data: ReplayData) -> dict[str, float]:
    """AUPRC and F1 (at 0.5 and best) on the held-out test windows."""
    proba = model.predict_proba(data.test_X)
    return {
        "auprc": auprc(data.test_y, proba),
        "f1": f1_at(data.test_y, proba, model.threshold),
        "best_f1": best_threshold(data.test_y, proba)[1],
    }


def _subsample(X: np.ndarray | None, n: int, rng: np.random.Generator) -> np.ndarray | None:
    if X is None or len(X) <= n:
        return X
    return X[np.sort(rng.choice(len(X), n, replace=False))]


def labeled_windows(data: ReplayData, labeled: np.ndarray, sfreq: float) -> Labeled:
    """The oracle's labels of the ``labeled`` pool windows (ids: pool indices)."""
    idx = np.flatnonzero(labeled)
    dense = None if data.pool_dense is None else data.pool_dense[idx]
    return Labeled(data.pool_X[idx], data.pool_y[idx], dense, sfreq, ids=idx)


def replay(
    strategy: str,
    data: ReplayData,
    settings: ReplaySettings,
    seed: int,
    sfreq: float = 256.0,
    cohort: SpikeDetector | None = None,
    on_round: Callable[[int, SpikeDetector], None] | None = None,
) -> list[RoundResult]:
    """One learning curve: a :class:`RoundResult` after each round (and at 0 labels when starting from ``cohort``).
    ``on_round(labels, model)`` sees the serving model after each round (to keep some, e.g. for detection)."""
    check_strategy(strategy)
    settings.check(data.n_pool)
    rng = np.random.default_rng(seed)
    reference = _subsample(data.reference_X, MAX_REFERENCE, rng) if strategy == "transfer" else None
    labeled = np.zeros(data.n_pool, bool)
    model, curve = cohort, []
    if cohort is not None:
        curve.append(RoundResult(0, 0, **test_scores(cohort, data), seconds=0.0))
    embedder = cold_embedder(settings.plan) if model is None else None
    ranking = rank(model, in_batches(data.pool_X), None, strategy, settings.batch_size, rng, sfreq, reference,
                   embedder=embedder)  # fmt: skip
    for r in range(settings.rounds()):
        start = time.perf_counter()
        unlabeled = np.flatnonzero(~labeled)
        labeled[unlabeled[ranking.order[: min(settings.batch_size, settings.budget - int(labeled.sum()))]]] = True
        round_seed = seed * 1000 + r
        learned, ranking = replay_round(data, labeled, model, strategy, settings, round_seed, rng, sfreq, reference)
        model = learned.model
        if on_round is not None:
            on_round(int(labeled.sum()), model)
        curve.append(
            RoundResult(
                int(labeled.sum()),
                int((data.pool_y[labeled] >= 0.5).sum()),
                **test_scores(model, data),
                seconds=time.perf_counter() - start,
            )
        )
        logger.info(
            "%s seed %d: %d labels (%d positive): AUPRC %.3f, F1 %.3f (%s)",
            strategy,
            seed,
            curve[-1].labels,
            curve[-1].positives,
            curve[-1].auprc,
            curve[-1].f1,
            "promoted" if learned.promoted else "kept the serving model",
        )
    return curve


def replay_round(
    data: ReplayData,
    labeled: np.ndarray,
    serving: SpikeDetector | None,
    strategy: str,
    settings: ReplaySettings,
    seed: int,
    rng: np.random.Generator,
    sfreq: float = 256.0,
    reference_X: np.ndarray | None = None,
) -> tuple[Learned, Ranking]:
    """What the retraining job does after an annotation, on the pool: train on the ``labeled`` windows (pseudo-labels
    from the unlabeled ones, as the job draws them), keep the better model, rank the unlabeled windows."""
    free = np.flatnonzero(~labeled)
    X_free = data.pool_X[pseudo_label_pool(free.tolist())]
    return learn_and_rank(
        labeled_windows(data, labeled, sfreq),
        data.pool_X[free],
        serving,
        strategy,
        settings.batch_size,
        settings.plan,
        seed,
        X_free,
        reference_X,
        rng,
    )


def converged_reference(data: ReplayData, settings: ReplaySettings, seed: int) -> dict[str, float]:
    """Test scores of the model trained on every pool label to convergence (the ceiling a strategy should approach;
    see :func:`fit_converged`). ``held_out_auprc``: the test AUPRC of the probe fit (for comparison)."""
    start = time.perf_counter()
    model, probe = fit_converged(data, settings, seed)
    return {
        "labels": data.n_pool,
        "epochs": model.epochs,
        "probe_epochs": len(probe.history_),
        "held_out_auprc": test_scores(probe, data)["auprc"],
        **test_scores(model, data),
        "seconds": time.perf_counter() - start,
    }


def fit_converged(data: ReplayData, settings: ReplaySettings, seed: int) -> tuple[SpikeDetector, SpikeDetector]:
    """The model trained on every pool label to convergence, and the probe fit that chose its number of epochs.

    The number of epochs is chosen on a validation slice: a stratified fifth of the pool is scored after every
    epoch while the rest trains, with ``reference_patience`` epochs of patience and tenfold rate drops
    (:class:`~ls_backend.model.estimator.Plateau`). Then the model is refit on the whole pool for that many epochs
    (the live one-cycle schedule), so the reference neither loses a fifth of its labels nor its best epoch to a
    noisy validation score."""
    held = validation_rows(data.pool_y, 0, np.random.default_rng(seed))
    train = ~held
    params = {**settings.plan.model, "samples_per_epoch": None, "seed": seed}
    probe = SpikeDetector(**params, epochs=settings.reference_epochs, patience=settings.reference_patience)
    dense = None if data.pool_dense is None else data.pool_dense[train]
    eval_set = (data.pool_X[held], data.pool_y[held])
    probe.fit(data.pool_X[train], data.pool_y[train], dense_targets=dense, eval_set=eval_set)
    epochs = best_epoch(probe.history_, minimum=settings.plan.cold_epochs)
    model = SpikeDetector(**params, epochs=epochs)
    model.fit(data.pool_X, data.pool_y, dense_targets=data.pool_dense)
    return model, probe


def best_epoch(history: list[dict], minimum: int = 1) -> int:
    """Epochs up to and including the best validation AUPRC of a fit's history (at least ``minimum``)."""
    scores = [h.get("val_auprc", float("nan")) for h in history]
    finite = [i for i, v in enumerate(scores) if np.isfinite(v)]
    best = max(finite, key=lambda i: scores[i]) + 1 if finite else len(history)
    return max(minimum, best)


def compute_matched_reference(data: ReplayData, settings: ReplaySettings, seed: int) -> dict[str, float]:
    """Test scores of the model trained on every pool label for as many windows as the last model of a replay saw."""
    start = time.perf_counter()
    params = {**settings.plan.model, "samples_per_epoch": settings.budget, "seed": seed}
    model = SpikeDetector(**params, epochs=settings.matched_epochs())
    model.fit(data.pool_X, data.pool_y, dense_targets=data.pool_dense)
    return {"labels": data.n_pool, **test_scores(model, data), "seconds": time.perf_counter() - start}


def fit_cohort(
    data: ReplayData, settings: ReplaySettings, seed: int, epochs: int, init_from: dict | None = None
) -> SpikeDetector:
    """The warm-start model: trained on the other patients' windows (``reference_*``) for ``epochs``, from
    ``init_from`` (e.g. a pretrained encoder's state) when given."""
    if data.reference_X is None or data.reference_y is None:
        raise ValueError("a warm start needs labelled windows of other patients than the target (reference_X, y)")
    model = SpikeDetector(**settings.plan.model, epochs=epochs, seed=seed)
    return model.fit(data.reference_X, data.reference_y, dense_targets=data.reference_dense, init_from=init_from)
