"""Label Studio tasks from a window store: decimated display data, metadata, and optional recording events."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from .display import DisplayLinks
from .labelconfig import (
    CALIBRATION_KEY,
    CONTEXT_SECONDS,
    EPILEPTIFORM_LABELS,
    TIME_COLUMN,
    TS_NAME,
    PageLayout,
    channel_key,
    nice_gain_uv,
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
GAIN_ROBUST_FACTOR = 5.0  # a channel row spans +-5 robust standard deviations of the patient's signal
CALIBRATION_PULSE_SECONDS = (0.2, 0.7)  # the calibration row's pulse, from the page's start


def patient_gain_uv(stores: Sequence[WindowStore]) -> float:
    """The patient's amplitude scale: the usual EEG gain just above ``GAIN_ROBUST_FACTOR`` times the median robust
    standard deviation of its channels (over all its recordings), so that background fills a fifth of a row."""
    if not stores:
        raise ValueError("an amplitude scale needs at least one window store")
    scales = np.concatenate([store.channel_scale_uv for store in stores])
    return nice_gain_uv(GAIN_ROBUST_FACTOR * float(np.median(scales)))


def page_layout(
    stores: Sequence[WindowStore], gain_uv: float | None = None, context_seconds: float = CONTEXT_SECONDS
) -> PageLayout:
    """The page every task of a patient shows: its window length, ``context_seconds`` around, one gain
    (``gain_uv``, default :func:`patient_gain_uv`)."""
    lengths = {store.window_samples / store.sfreq for store in stores}
    if len(lengths) != 1:
        raise ValueError(f"the recordings of one patient have different window lengths: {sorted(lengths)} s")
    return PageLayout(gain_uv or patient_gain_uv(stores), lengths.pop(), context_seconds)


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


def event_results(annotations: Sequence[Annotation], onset: float, duration: float, window_id: str) -> list[dict]:
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
    layout: PageLayout | None = None,
    display: DisplayLinks | None = None,
) -> Iterator[dict]:
    """One task per window (``rows`` of the store's index, all by default), showing the window on a page of
    ``layout`` (default: :func:`page_layout` of this store): inline, or by URL of ``display``'s backend."""
    if events not in EVENT_MODES:
        raise ValueError(f"events must be one of {', '.join(EVENT_MODES)}, got {events!r}")
    layout = layout or page_layout([store])
    picked = np.arange(len(store)) if rows is None else np.asarray(rows)
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
        if display is None:
            series: dict | str = page_data(store, int(row), layout, max_display_points)
        else:
            series = display.url(store_key, window_id, layout, max_display_points)
        task: dict[str, Any] = {"data": _task_data(store, series, onset, duration, window_id, start_time)}
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


def page_data(store: WindowStore, row: int, layout: PageLayout, max_display_points: int = MAX_DISPLAY_POINTS) -> dict:
    """The display series of window ``row``'s page (what the editor draws), decimated to at most
    ``max_display_points`` points over all channels."""
    context_samples = int(round(layout.context_seconds * store.sfreq))
    page_samples = store.window_samples + 2 * context_samples
    factor = int(np.ceil(store.n_chans * page_samples / max_display_points))
    page_start = int(store.starts[row]) - context_samples
    page = store.read_span(page_start, page_samples)
    return page_series(page, page_start / store.sfreq, store.sfreq, factor, layout.gain_uv)


def page_series(page: np.ndarray, start_seconds: float, sfreq: float, factor: int, gain_uv: float) -> dict:
    """The display series of a page: each channel clipped to +-``gain_uv`` (flat at the row's edge, never
    rescaled), decimated by ``factor``, plus the calibration row (a pulse of ``gain_uv``)."""
    shown = minmax_decimate(np.clip(page, -gain_uv, gain_uv), factor)
    step = page.shape[1] / sfreq / shown.shape[1]
    offsets = step * np.arange(shown.shape[1])
    series = {TIME_COLUMN: np.round(start_seconds + offsets, 4).tolist()}
    for i, values in enumerate(np.round(shown.astype(np.float64), 1)):
        series[channel_key(i)] = values.tolist()
    pulse_start, pulse_end = CALIBRATION_PULSE_SECONDS
    series[CALIBRATION_KEY] = np.where((offsets >= pulse_start) & (offsets < pulse_end), gain_uv, 0.0).tolist()
    return series


def _task_data(
    store: WindowStore,
    series: dict | str,
    onset: float,
    duration: float,
    window_id: str,
    start_time: datetime | None,
) -> dict:
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
