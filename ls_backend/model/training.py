"""Training strategies around :class:`SpikeDetector`: soft labels, pseudo-labels, cross-patient warm start.

* :func:`soft_target` / :func:`soft_targets`: several clinicians' window choices -> one probabilistic target
  (Spike = 1, No spike = 0, Unsure = 0.5; the mean over annotators). "Unsure" is kept, not discarded.
* :func:`dense_targets`: spike regions -> a per-sample target, softened by a linear ramp at each region edge
  (clinicians disagree by tens of milliseconds about where a spike starts and ends).
* :func:`pseudo_labels` and :func:`fit_with_pseudo_labels`: confident unlabeled windows join training with a
  reduced weight; never where a human label exists; recomputed from the current model every round.
* :func:`warm_start`: fine-tune a cohort model on a new patient (optionally freezing early blocks), train a cold
  model too, and keep whichever scores better on the patient's validation windows (falls back to cold start).
* :func:`robust_scale_patient`: per-patient, per-channel robust normalisation for window sets that were not
  scaled by the window store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .estimator import SpikeDetector
from .metrics import auprc

logger = logging.getLogger(__name__)

CHOICE_TARGETS = {"Spike": 1.0, "No spike": 0.0, "Unsure": 0.5}  # values of converters.labelconfig.WINDOW_CHOICES
REGION_TARGETS = {"Spike": 1.0, "Sharp wave": 1.0}  # epileptiform region labels; Artifact regions are negatives
DEFAULT_EDGE_SECONDS = 0.03


def soft_target(choices: Iterable[str | None]) -> float | None:
    """The mean target of one window's annotations (None entries, e.g. skipped tasks, are ignored).

    Returns None when no annotator gave a usable choice. Unknown choice names raise ValueError naming them.
    """
    values = []
    for choice in choices:
        if choice is None:
            continue
        if choice not in CHOICE_TARGETS:
            raise ValueError(f"unknown window choice {choice!r}; expected one of {sorted(CHOICE_TARGETS)}")
        values.append(CHOICE_TARGETS[choice])
    return float(np.mean(values)) if values else None


def soft_targets(annotations: Sequence[Iterable[str | None]]) -> tuple[np.ndarray, np.ndarray]:
    """Targets ``[n]`` and a labelled mask ``[n]`` for ``n`` windows, each with its list of per-clinician choices."""
    targets = np.zeros(len(annotations), np.float32)
    labelled = np.zeros(len(annotations), bool)
    for i, choices in enumerate(annotations):
        value = soft_target(choices)
        if value is not None:
            targets[i], labelled[i] = value, True
    return targets, labelled


def dense_targets(
    regions: Sequence[tuple[float, float] | tuple[float, float, float]],
    n_times: int,
    sfreq: float,
    onset_seconds: float = 0.0,
    edge_seconds: float = DEFAULT_EDGE_SECONDS,
) -> np.ndarray:
    """Per-sample target ``[n_times]`` of one window from regions ``(start, end[, value])`` in task seconds.

    Inside a region the target is ``value`` (1 by default; e.g. the share of annotators who drew it), ramping
    linearly to 0 over ``edge_seconds`` centred on each edge; overlapping regions take the maximum.
    """
    t = onset_seconds + (np.arange(n_times) + 0.5) / sfreq
    out = np.zeros(n_times, np.float32)
    half = edge_seconds / 2
    for region in regions:
        start, end = float(region[0]), float(region[1])
        value = float(region[2]) if len(region) > 2 else 1.0
        if end <= start:
            continue
        if half > 0:
            ramp = np.minimum((t - (start - half)) / edge_seconds, ((end + half) - t) / edge_seconds)
            ramp = np.clip(ramp, 0.0, 1.0)  # a region shorter than the ramp peaks below 1
        else:
            ramp = ((t >= start) & (t < end)).astype(np.float64)
        np.maximum(out, (value * ramp).astype(np.float32), out=out)
    return out


def robust_scale_patient(X: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Divide each channel by 1.4826 x its median absolute deviation over all of its patient's windows.

    NaN (absent) channels stay NaN. The window store already does this per recording; use this for window sets
    from elsewhere, so amplitude means the same thing across patients.
    """
    X = np.array(X, np.float32, copy=True)
    groups = np.zeros(len(X)) if groups is None else np.asarray(groups)
    for g in np.unique(groups):
        rows = groups == g
        sub = X[rows]
        med = np.nanmedian(sub, axis=(0, 2), keepdims=True)
        mad = 1.4826 * np.nanmedian(np.abs(sub - med), axis=(0, 2), keepdims=True)
        mad = np.where(np.isfinite(mad) & (mad > 0), mad, 1.0)
        X[rows] = sub / mad
    return X


# ---------------------------------------------------------------------------------------------- pseudo-labels


@dataclass(frozen=True)
class PseudoLabelParams:
    """Windows with probability >= ``positive_threshold`` become positives, <= ``negative_threshold`` negatives,
    each with ``weight`` (human labels weigh 1); at most ``max_fraction`` of the unlabelled pool per class."""

    positive_threshold: float = 0.95
    negative_threshold: float = 0.02
    weight: float = 0.3
    max_fraction: float = 1.0


def pseudo_labels(
    proba: np.ndarray, human_labelled: np.ndarray, params: PseudoLabelParams | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(targets, weights, selected) for every window: confident, unlabelled windows only.

    ``human_labelled`` windows are never selected, whatever the model says (a pseudo-label never overrides a
    human label). The most confident windows are kept first when ``max_fraction`` caps the count.
    """
    params = params or PseudoLabelParams()
    proba = np.asarray(proba, np.float64)
    free = ~np.asarray(human_labelled, bool)
    targets = np.zeros(len(proba), np.float32)
    selected = np.zeros(len(proba), bool)
    cap = int(np.ceil(params.max_fraction * free.sum()))
    for mask, target, confidence in (
        (free & (proba >= params.positive_threshold), 1.0, proba),
        (free & (proba <= params.negative_threshold), 0.0, 1.0 - proba),
    ):
        idx = np.flatnonzero(mask)
        idx = idx[np.argsort(-confidence[idx], kind="stable")][:cap]
        selected[idx] = True
        targets[idx] = target
    weights = np.where(selected, params.weight, 0.0).astype(np.float32)
    return targets, weights, selected


@dataclass
class SelfTrainingRound:
    round: int
    n_pseudo_positive: int
    n_pseudo_negative: int


def fit_with_pseudo_labels(
    model: SpikeDetector,
    X_labelled: np.ndarray,
    y_labelled: np.ndarray,
    X_unlabelled: np.ndarray,
    rounds: int = 2,
    params: PseudoLabelParams | None = None,
    sample_weight: np.ndarray | None = None,
    init_from: SpikeDetector | dict | None = None,
    dense_targets: np.ndarray | None = None,
    refit_epochs: int | None = None,
) -> tuple[SpikeDetector, list[SelfTrainingRound]]:
    """Self-training: fit a clone of ``model`` on the human labels, then ``rounds`` times pseudo-label the
    unlabelled windows with the current fit and refit on both (each round starts from the previous round's weights;
    pseudo-labels are recomputed from scratch every round, so a window may enter and leave). ``dense_targets`` of the
    labelled windows (NaN rows: unknown time course) are kept; pseudo-labelled windows have none. ``refit_epochs``
    (default: the model's) is for the refits, which start from the previous fit's weights. Every fit also learns
    from the unlabelled windows by consistency when the model's ``consistency_weight`` asks for it."""
    params = params or PseudoLabelParams()
    n_lab = len(X_labelled)
    weight = np.ones(n_lab, np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
    fitted = model.clone().fit(
        X_labelled,
        y_labelled,
        sample_weight=weight,
        init_from=init_from,
        dense_targets=dense_targets,
        X_unlabeled=X_unlabelled,
    )
    dense_all = None
    if dense_targets is not None:
        unknown = np.full((len(X_unlabelled), dense_targets.shape[1]), np.nan, np.float32)
        dense_all = np.concatenate([np.asarray(dense_targets, np.float32), unknown])
    log = []
    X_all = np.concatenate([X_labelled, X_unlabelled])
    human = np.r_[np.ones(n_lab, bool), np.zeros(len(X_unlabelled), bool)]
    for r in range(rounds):
        proba = np.r_[np.zeros(n_lab), fitted.predict_proba(X_unlabelled)]
        targets, weights, selected = pseudo_labels(proba, human, params)
        y_all = np.where(human, np.r_[y_labelled, np.zeros(len(X_unlabelled))], targets).astype(np.float32)
        w_all = np.where(human, np.r_[weight, np.zeros(len(X_unlabelled))], weights).astype(np.float32)
        n_pos, n_neg = int((selected & (targets == 1)).sum()), int((selected & (targets == 0)).sum())
        log.append(SelfTrainingRound(r + 1, n_pos, n_neg))
        logger.info("self-training round %d: %d pseudo-positive, %d pseudo-negative", *vars(log[-1]).values())
        keep = human | selected
        dense_keep = None if dense_all is None else dense_all[keep]
        refit = model.clone() if refit_epochs is None else model.clone(epochs=refit_epochs)
        fitted = refit.fit(
            X_all[keep],
            y_all[keep],
            sample_weight=w_all[keep],
            init_from=fitted,
            dense_targets=dense_keep,
            X_unlabeled=X_unlabelled,
        )
    return fitted, log


# ---------------------------------------------------------------------------------------------- warm start


@dataclass
class WarmStartResult:
    """The model chosen for a new patient and why."""

    model: SpikeDetector
    choice: str  # "warm", "cold" or "cohort" (no labels of the patient: the cohort model as it is)
    scores: dict[str, float] = field(default_factory=dict)


def warm_start(
    cohort: SpikeDetector,
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    freeze_blocks: int | None = None,
    dense: np.ndarray | None = None,
    compare_cold: bool = True,
    fine_tune: dict | None = None,
    cold_params: dict | None = None,
) -> WarmStartResult:
    """A model for a new patient: the cohort model fine-tuned on the patient's labels ``(X, y)``.

    With validation windows of the patient (``X_val``, ``y_val`` with at least one positive) a cold-started model
    is trained too and the better AUPRC wins (ties go to warm start): the fallback when the cohort does not
    transfer. Without labels of the patient the cohort model is returned as it is. ``fine_tune`` overrides
    training parameters of the warm model (e.g. a lower ``lr`` or fewer ``epochs``), ``cold_params`` those of the
    cold one (default: the cohort's).
    """
    if len(y) == 0:
        return WarmStartResult(cohort, "cohort")
    params = dict(fine_tune or {}) | ({} if freeze_blocks is None else {"freeze_blocks": freeze_blocks})
    warm = cohort.clone(**params).fit(X, y, dense_targets=dense, init_from=cohort)
    if not compare_cold or X_val is None or y_val is None or not np.any(np.asarray(y_val) >= 0.5):
        return WarmStartResult(warm, "warm")
    cold = cohort.clone(**({"freeze_blocks": 0} | dict(cold_params or {}))).fit(X, y, dense_targets=dense)
    scores = {"warm": auprc(y_val, warm.predict_proba(X_val)), "cold": auprc(y_val, cold.predict_proba(X_val))}
    choice = "warm" if scores["warm"] >= scores["cold"] else "cold"
    logger.info("warm start: validation AUPRC warm %.3f, cold %.3f -> %s", scores["warm"], scores["cold"], choice)
    return WarmStartResult(warm if choice == "warm" else cold, choice, scores)
