"""Model outputs -> Label Studio results: spike regions with channel attribution, and the window-level choice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from converters.labelconfig import channels_result, region_result, window_result

from .model.regions import extract_regions

if TYPE_CHECKING:
    from .model.estimator import SpikeDetector
    from .stores import Windows

MAX_ATTRIBUTED_CHANNELS = 3  # a region names the channels that drove it, strongest first


def pre_annotation(
    dense_proba: np.ndarray,
    channel_proba: np.ndarray,
    window_proba: float,
    ch_names: list[str],
    onset_seconds: float,
    sfreq: float,
    threshold: float = 0.5,
    region_id: str = "r",
) -> list[dict]:
    """Results for one task: a "Spike" region per detected run (times in the task's seconds), the channels
    above ``threshold`` that drove it, and "Spike"/"No spike" for the window."""
    regions = extract_regions(dense_proba, sfreq, threshold, onset_seconds=onset_seconds)
    drivers = _driving_channels(channel_proba, ch_names, threshold)
    results = []
    for k, region in enumerate(regions):
        rid = f"{region_id}{k}"
        results.append(region_result(region.start_seconds, region.end_seconds, "Spike", rid))
        if drivers:
            results.append(channels_result(drivers, rid))
    results.append(window_result("Spike" if window_proba >= threshold else "No spike"))
    return results


def model_pre_annotations(
    model: SpikeDetector, out: dict[str, np.ndarray], windows: Windows, task_ids: Sequence[object]
) -> list[list[dict]]:
    """:func:`pre_annotation` of each of ``windows`` (shown by the tasks ``task_ids``) from the outputs of
    ``model.predict_all`` on them (``out``); region ids start with the task id."""
    return [
        pre_annotation(
            out["dense"][k],
            out["channel"][k],
            float(out["proba"][k]),
            windows.ch_names[k],
            float(windows.onset_seconds[k]),
            model.sfreq,
            model.threshold,
            f"t{task_id}-",
        )
        for k, task_id in enumerate(task_ids)
    ]


def _driving_channels(channel_proba: np.ndarray, ch_names: list[str], threshold: float) -> list[str]:
    proba = np.nan_to_num(np.asarray(channel_proba, np.float64), nan=-1.0)
    order = np.argsort(-proba)[:MAX_ATTRIBUTED_CHANNELS]
    return [ch_names[i] for i in order if proba[i] >= threshold and i < len(ch_names)]
