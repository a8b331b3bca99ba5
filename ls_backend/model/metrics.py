"""Metrics that respect heavy class imbalance: AUPRC, F1 at a threshold, event sensitivity and false positives/hour.

Soft labels are binarised at 0.5 (an "unsure" majority counts as negative) wherever a metric needs classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

from .regions import extract_regions, runs_above


def _binary(y_true: np.ndarray) -> np.ndarray:
    return (np.asarray(y_true, np.float64) >= 0.5).astype(np.int64)


def auprc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision); NaN when there is no positive."""
    y = _binary(y_true)
    if y.sum() == 0:
        return float("nan")
    return float(average_precision_score(y, np.asarray(proba, np.float64)))


def f1_at(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of ``proba >= threshold`` (0 when nothing is predicted or nothing is positive)."""
    y = _binary(y_true).astype(bool)
    pred = np.asarray(proba) >= threshold
    tp = np.sum(pred & y)
    denom = pred.sum() + y.sum()
    return float(2 * tp / denom) if denom else 0.0


def best_threshold(y_true: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 over the precision-recall curve; (0.5, 0.0) without positives."""
    y = _binary(y_true)
    if y.sum() == 0:
        return 0.5, 0.0
    precision, recall, thresholds = precision_recall_curve(y, np.asarray(proba, np.float64))
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    k = int(np.argmax(f1))
    return float(thresholds[k]), float(f1[k])


def event_metrics(
    dense_proba: np.ndarray,
    dense_true: np.ndarray,
    sfreq: float,
    threshold: float = 0.5,
    min_duration_seconds: float = 0.02,
    merge_gap_seconds: float = 0.05,
) -> dict[str, float]:
    """Event-level sensitivity and false positives per hour from dense probabilities ``[n_windows, n_times]``.

    Events are the runs of ``dense_true >= 0.5``; detections are the regions a pre-annotation would show
    (:func:`extract_regions`: runs of ``dense_proba >= threshold``, merged across short gaps, short ones dropped),
    window by window (an event cut by a window border counts in each window). A true event is detected when a
    detection overlaps it; a detection overlapping no event is a false positive.
    """
    dense_proba = np.atleast_2d(np.asarray(dense_proba))
    dense_true = np.atleast_2d(np.asarray(dense_true))
    if dense_proba.shape != dense_true.shape:
        raise ValueError(f"shapes differ: {dense_proba.shape} vs {dense_true.shape}")
    n_events = n_detected = n_detections = n_false = 0
    for proba, true in zip(dense_proba, dense_true):
        events = runs_above(true, 0.5)
        regions = extract_regions(proba, sfreq, threshold, min_duration_seconds, merge_gap_seconds)
        detections = np.array(
            [[round(r.start_seconds * sfreq), round(r.end_seconds * sfreq)] for r in regions], np.int64
        ).reshape(-1, 2)
        n_events += len(events)
        n_detections += len(detections)
        if len(events) == 0:
            n_false += len(detections)
            continue
        if len(detections) == 0:
            continue
        # overlap matrix [events, detections]
        overlap = (events[:, None, 0] < detections[None, :, 1]) & (detections[None, :, 0] < events[:, None, 1])
        n_detected += int(overlap.any(axis=1).sum())
        n_false += int((~overlap.any(axis=0)).sum())
    hours = dense_proba.size / sfreq / 3600.0
    return {
        "n_events": n_events,
        "sensitivity": n_detected / n_events if n_events else float("nan"),
        "false_positives_per_hour": n_false / hours if hours else float("nan"),
        "n_detections": n_detections,
    }


@dataclass
class Report:
    """Window-level and event-level quality of one model on one labelled set."""

    n_windows: int
    prevalence: float
    auprc: float
    f1_at_threshold: float
    threshold: float
    best_f1: float
    best_threshold: float
    sensitivity: float = float("nan")
    false_positives_per_hour: float = float("nan")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def evaluate(
    y_true: np.ndarray,
    proba: np.ndarray,
    threshold: float = 0.5,
    dense_proba: np.ndarray | None = None,
    dense_true: np.ndarray | None = None,
    sfreq: float | None = None,
) -> Report:
    """All metrics at once (event-level ones when dense probabilities, dense truth and ``sfreq`` are given)."""
    y = _binary(y_true)
    best_t, best_f1 = best_threshold(y, proba)
    report = Report(
        n_windows=len(y),
        prevalence=float(y.mean()) if len(y) else float("nan"),
        auprc=auprc(y, proba),
        f1_at_threshold=f1_at(y, proba, threshold),
        threshold=threshold,
        best_f1=best_f1,
        best_threshold=best_t,
    )
    if dense_proba is not None and dense_true is not None and sfreq:
        events = event_metrics(dense_proba, dense_true, sfreq, threshold)
        report.sensitivity = events["sensitivity"]
        report.false_positives_per_hour = events["false_positives_per_hour"]
    return report
