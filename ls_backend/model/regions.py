"""Spike regions from a dense per-time-step probability (what pre-annotations and event-level metrics use)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Region:
    """One detected region, in seconds from the window onset plus ``onset_seconds``; score = peak probability."""

    start_seconds: float
    end_seconds: float
    score: float


def runs_above(values: np.ndarray, threshold: float) -> np.ndarray:
    """``[n, 2]`` (start, stop) sample indices of the runs where ``values >= threshold`` (stop exclusive)."""
    above = np.concatenate([[False], np.asarray(values) >= threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    return edges.reshape(-1, 2)


def extract_regions(
    dense_proba: np.ndarray,
    sfreq: float,
    threshold: float = 0.5,
    min_duration_seconds: float = 0.02,
    merge_gap_seconds: float = 0.05,
    onset_seconds: float = 0.0,
) -> list[Region]:
    """Regions where the dense probability of one window (``[n_times]``) reaches ``threshold``.

    Runs closer than ``merge_gap_seconds`` are merged (one polyspike, not three), runs shorter than
    ``min_duration_seconds`` dropped. Times are ``onset_seconds`` plus the position in the window.
    """
    dense_proba = np.asarray(dense_proba, np.float64)
    runs = runs_above(dense_proba, threshold)
    if len(runs) == 0:
        return []
    gap = round(merge_gap_seconds * sfreq)
    merged = [list(runs[0])]
    for start, stop in runs[1:]:
        if start - merged[-1][1] <= gap:
            merged[-1][1] = stop
        else:
            merged.append([start, stop])
    min_len = max(1, round(min_duration_seconds * sfreq))
    return [
        Region(onset_seconds + start / sfreq, onset_seconds + stop / sfreq, float(dense_proba[start:stop].max()))
        for start, stop in merged
        if stop - start >= min_len
    ]
