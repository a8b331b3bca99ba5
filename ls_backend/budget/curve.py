"""The model's learning curve: quality after each retraining against labels spent, and what more labels would buy.

A saturating inverse power law ``score(n) = a - b * n**-c`` (a: the level the curve approaches, b > 0, c > 0) is
the usual shape of a learning curve. It is fitted by least squares: for each ``c`` on a grid, ``a`` and ``b`` are
linear. With few points the fit is weak, so the estimate says how many points it rests on, gives a range from
leave-one-out refits when there are enough, and no estimate at all below ``MIN_POINTS_ESTIMATE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_POINTS_ESTIMATE = 3  # retrainings with a validation score before labels-to-target is estimated
MIN_POINTS_STOP = 4  # ... before the curve may be called flat
MIN_POINTS_RANGE = 5  # ... before a leave-one-out range is given
FLAT_GAIN = 0.01  # a curve is flat when the next LOOKAHEAD labels are predicted to add less than this
LOOKAHEAD = 100
MAX_SCORE = 1.0  # validation AUPRC cannot exceed 1
_EXPONENTS = np.linspace(0.05, 2.0, 40)


@dataclass(frozen=True)
class LearningCurve:
    """``score(n) = plateau - scale * n**-exponent``; ``scale == 0`` is a flat line."""

    plateau: float
    scale: float
    exponent: float
    n_points: int

    def score(self, n_labels: float | np.ndarray) -> float | np.ndarray:
        return self.plateau - self.scale * np.power(np.maximum(n_labels, 1.0), -self.exponent)

    def gain(self, n_labels: float, more: float = LOOKAHEAD) -> float:
        """Predicted quality gained by ``more`` labels after ``n_labels``."""
        return float(self.score(n_labels + more) - self.score(n_labels))

    def labels_for(self, target: float) -> float:
        """Labels at which the curve reaches ``target`` (``inf`` when it levels off below it)."""
        if self.scale <= 0 or self.plateau <= target:
            return math.inf
        return float((self.scale / (self.plateau - target)) ** (1.0 / self.exponent))


def fit_learning_curve(labels: np.ndarray | list, scores: np.ndarray | list) -> LearningCurve:
    """Least-squares fit of the saturating curve to (labels spent, validation score) points (at least 2)."""
    n = np.asarray(labels, float)
    y = np.asarray(scores, float)
    if n.shape != y.shape or n.ndim != 1 or len(n) < 2:
        raise ValueError(f"need at least 2 (labels, score) points of equal length, got {len(n)} and {len(y)}")
    if (n <= 0).any() or not np.isfinite(y).all():
        raise ValueError("labels must be positive and scores finite")
    best = LearningCurve(float(y.mean()), 0.0, 1.0, len(n))  # no improvement at all: a flat line
    best_sse = float(((y - y.mean()) ** 2).sum())
    for exponent in _EXPONENTS:
        design = np.stack([np.ones_like(n), -(n**-exponent)], axis=1)
        (plateau, scale), *_ = np.linalg.lstsq(design, y, rcond=None)
        if plateau > MAX_SCORE:  # the curve cannot approach a score above 1: fix the plateau there
            plateau = MAX_SCORE
            scale = float(np.dot(MAX_SCORE - y, n**-exponent) / np.dot(n**-exponent, n**-exponent))
        if scale <= 0:
            continue
        curve = LearningCurve(float(plateau), float(scale), float(exponent), len(n))
        sse = float(((y - curve.score(n)) ** 2).sum())
        if sse < best_sse - 1e-12:
            best, best_sse = curve, sse
    return best


@dataclass(frozen=True)
class Assessment:
    """What the curve says, in numbers and one sentence for a project manager."""

    curve: LearningCurve | None
    latest_score: float | None
    labels_to_target: float | None  # more labels needed (inf: not reachable on this curve; None: no estimate)
    labels_to_target_range: tuple[float, float] | None
    flat: bool
    target_reached: bool
    advice: str


def assess(
    labels: list | np.ndarray, scores: list | np.ndarray, target: float, spent: int, labels_per_window: float = 1.0
) -> Assessment:
    """Estimate the labels still needed to reach ``target`` and whether to stop, from the quality points.

    ``labels`` of the points and ``spent`` count labeled windows (what the model history records); the estimate is
    returned in labels (clinician answers), ``labels_per_window`` answers per window as observed so far.
    """
    n = np.asarray(labels, float)
    y = np.asarray(scores, float)
    latest = float(y[np.argmax(n)]) if len(n) else None
    reached = latest is not None and latest >= target
    if len(n) < MIN_POINTS_ESTIMATE:
        advice = (
            f"Target quality {target:.2f} reached: you can stop." if reached else
            f"Too early to estimate: {len(n)} retraining(s) with a quality score so far, "
            f"{MIN_POINTS_ESTIMATE} are needed (a model is scored once 10 windows with and without spikes are "
            "labeled). Keep labeling."
        )  # fmt: skip
        return Assessment(None, latest, None, None, False, reached, advice)
    curve = fit_learning_curve(n, y)
    now = max(float(n.max()), float(spent))
    gain = curve.gain(now, LOOKAHEAD / labels_per_window)
    flat = len(n) >= MIN_POINTS_STOP and gain < FLAT_GAIN
    needed = max(0.0, curve.labels_for(target) - now) * labels_per_window
    spread = _loo_range(n, y, target, now, labels_per_window) if len(n) >= MIN_POINTS_RANGE else None
    advice = _advice(curve, latest, target, needed, flat, gain, now * labels_per_window)
    return Assessment(curve, latest, needed, spread, flat, reached, advice)


def _loo_range(n: np.ndarray, y: np.ndarray, target: float, now: float, per_window: float) -> tuple[float, float]:
    """Min and max of the labels-to-target estimate over the fits that leave one point out."""
    keep = ~np.eye(len(n), dtype=bool)
    estimates = [max(0.0, fit_learning_curve(n[k], y[k]).labels_for(target) - now) * per_window for k in keep]
    return float(min(estimates)), float(max(estimates))


def _advice(
    curve: LearningCurve, latest: float | None, target: float, needed: float, flat: bool, gain: float, spent: float
) -> str:
    rough = f" (rough: from {curve.n_points} retrainings)" if curve.n_points < 2 * MIN_POINTS_RANGE else ""
    if latest is not None and latest >= target:
        return f"Target quality {target:.2f} reached ({latest:.2f}): you can stop."
    if flat:
        return (
            f"The model has stopped improving: the next {LOOKAHEAD} labels are predicted to add {gain:+.3f} "
            f"to its quality. Consider stopping{rough}."
        )
    if not math.isfinite(needed) or needed > 100 * spent:
        return (
            f"At this rate quality levels off near {curve.plateau:.2f}, below the target {target:.2f}: "
            f"more labels alone are unlikely to reach it{rough}."
        )
    return f"About {math.ceil(needed)} more labels to reach quality {target:.2f}{rough}. Keep labeling."
