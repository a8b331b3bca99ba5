"""Label Studio tasks from a window store: decimated display data, metadata, and optional recording events."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from .labelconfig import (
    EPILEPTIFORM_LABELS,
    TIME_COLUMN,
    TS_NAME,
    channel_key,
    region_result,
    window_result,
)
from .readers.base import Annotation
from .windows import WindowStore

logger = logging.getLogger(__name__)

EVENT_MODES = ("none", "predictions", "annotations")
EVENTS_MODEL_VERSION = "recording-events"
POINT_EVENT_SECONDS = 0.1  # a marker without duration becomes a region this long, centred on it
MAX_DISPLAY_POINTS = 50_000  # per task, all channels: the editor stays responsive well below ~1e5


def minmax_decimate(x: np.ndarray, factor: int) -> np.ndarray:
    """Peak-preserving display decimation: each bin of ``2 * factor`` samples becomes its min and max, in order."""
    if factor <= 1:
        return x
    n_bins = x.shape[-1] // (2 * factor)
    bins = x[..., : n_bins * 2 * factor].reshape(*x.shape[:-1], n_bins, 2 * factor)
    lo, hi = bins.argmin(axis=-1), bins.argmax(axis=-1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    picked = np.stack([np.take_along_axis(bins, first[..., None], -1), np.take_along_axis(bins, second[..., None], -1)])
    out = np.moveaxis(picked[..., 0], 0, -1).reshape(*x.shape[:-1], 2 * n_bins)
    return out


def event_label(description: str) -> str | None:
    """Map a recording's event text to a region label (None: not a labeling event)."""
    text = description.lower()
    if "sharp" in text:
        return "Sharp wave"
    if "spike" in text:
        return "Spike"
    if any(word in text for word in ("artifact", "artefact", "pop", "muscle")):
        return "Artifact"
    return None


def event_results(
    annotations: Sequence[Annotation], onset: float, duration: float, window_id: str
) -> list[dict]:
    """Regions for the events overlapping ``[onset, onset + duration)``, plus the window-level choice."""
    results = []
    for k, ann in enumerate(annotations):
        label = event_label(ann.description)
        if label is None:
            continue
        start, end = ann.onset_seconds, ann.onset_seconds + ann.duration_seconds
        if ann.duration_seconds <= 0:
            start, end = start - POINT_EVENT_SECONDS / 2, start + POINT_EVENT_SECONDS / 2
        if end <= onset or start >= onset + duration:
            continue
        region = region_result(max(start, onset), min(end, onset + duration), label, f"{window_id}-ev{k}")
        results.append(region)
    epileptiform = any(r["value"]["timeserieslabels"][0] in EPILEPTIFORM_LABELS for r in results)
    results.append(window_result("Spike" if epileptiform else "No spike"))
    return results


def make_tasks(
    store: WindowStore,
    *,
    patient: str,
    recording: str,
    store_key: str,
    rows: Sequence[int] | None = None,
    events: str = "none",
    max_display_points: int = MAX_DISPLAY_POINTS,
) -> Iterator[dict]:
    """One task per window (``rows`` of the store's index, all by default)."""
    if events not in EVENT_MODES:
        raise ValueError(f"events must be one of {', '.join(EVENT_MODES)}, got {events!r}")
    picked = np.arange(len(store)) if rows is None else np.asarray(rows)
    factor = int(np.ceil(store.n_chans * store.window_samples / max_display_points))
    annotations = store.annotations() if events != "none" else []
    if events != "none":
        unused = Counter(a.description for a in annotations if event_label(a.description) is None)
        if unused:
            logger.info("%s: events not mapped to a label: %s", recording, dict(unused))
    meas_date = store.provenance.get("meas_date")
    start_time = datetime.fromisoformat(meas_date) if meas_date else None
    duration = store.window_samples / store.sfreq
    for row in picked:
        window_id = str(store.ids[row])
        onset = float(store.starts[row] / store.sfreq)
        signal = store.read_windows([window_id], scaled=False)[0]
        task: dict[str, Any] = {"data": _task_data(store, signal, factor, onset, duration, window_id, start_time)}
        task["data"] |= {"patient": patient, "recording": recording, "store": store_key}
        task["data"]["title"] = f"{patient} · {recording} · {_clock(onset)} (+{duration:g} s)"
        if events != "none":
            result = event_results(annotations, onset, duration, window_id)
            key = "predictions" if events == "predictions" else "annotations"
            entry: dict[str, Any] = {"result": result}
            if key == "predictions":
                entry |= {"model_version": EVENTS_MODEL_VERSION, "score": 1.0}
            task[key] = [entry]
        yield task


def _task_data(
    store: WindowStore,
    signal: np.ndarray,
    factor: int,
    onset: float,
    duration: float,
    window_id: str,
    start_time: datetime | None,
) -> dict:
    shown = minmax_decimate(signal, factor)
    step = duration / shown.shape[1]
    series = {TIME_COLUMN: np.round(onset + step * np.arange(shown.shape[1]), 4).tolist()}
    for i, values in enumerate(np.round(shown.astype(np.float64), 1)):
        series[channel_key(i)] = values.tolist()
    return {
        TS_NAME: series,
        "window_id": window_id,
        "onset_seconds": round(onset, 4),
        "duration_seconds": duration,
        "onset_time": (start_time + timedelta(seconds=onset)).isoformat() if start_time else "",
        "channels": ", ".join(store.ch_names),
    }


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}.{int((seconds - whole) * 1000):03d}"
