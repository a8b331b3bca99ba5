"""Windows a clinician labeled override the model's events: the spikes they confirmed stay, the "No spike" windows
yield none.

A window's answer is the majority of its clinicians (its soft target, see :mod:`ls_backend.labels`): above 0.5 a
spike window, below 0.5 a "No spike" window; exactly 0.5 ("Unsure", or one clinician each way) decides nothing, and
the model's events there stay as they are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from converters.windows import WindowStore

from ..labels import TaskLabel
from .events import Event

logger = logging.getLogger(__name__)

CONFIRMED = "confirmed"
Interval = tuple[float, float]


def store_key(store_path: Path, window_store_dir: Path) -> str | None:
    """The store's key as tasks name it (its path relative to WINDOW_STORE_DIR); None for a store outside it."""
    path, root = store_path.resolve(), window_store_dir.resolve()
    return os.path.relpath(path, root) if root in path.parents else None


def labels_of_store(labels: Iterable[TaskLabel], store: WindowStore, key: str | None) -> list[TaskLabel]:
    """The labels of windows of ``store``: its key and a window id of its index (ids carry the recording's
    fingerprint, so a store outside WINDOW_STORE_DIR, ``key`` None, is matched on its window ids alone)."""
    ids = set(store.ids)
    return [lab for lab in labels if lab.window_id in ids and (key is None or lab.store == key)]


def apply_labels(
    events: list[Event], labels: list[TaskLabel], window_seconds: float, store: WindowStore | None = None
) -> list[Event]:
    """The events of one recording with its labeled windows applied (``labels``: this recording's only).

    An event peaking in a spike window is kept and marked ``reviewed="confirmed"``; otherwise one peaking in a
    "No spike" window is removed. Each labeled spike region (or a spike window without regions) that no event
    overlaps becomes an event of its own, confirmed, with probability 1: its peak is the largest deflection of the
    model input inside it when ``store`` is given (else its middle). Returned in time order.
    """
    spike = [_window(lab, window_seconds) for lab in labels if lab.target > 0.5]
    no_spike = [_window(lab, window_seconds) for lab in labels if lab.target < 0.5]
    kept = []
    for event in events:
        if _inside(event.peak, spike):
            kept.append(replace(event, reviewed=CONFIRMED))
        elif not _inside(event.peak, no_spike):
            kept.append(event)
    wanted = [(start, end) for lab in labels if lab.target > 0.5 for start, end, _ in lab.regions]
    wanted += [_window(lab, window_seconds) for lab in labels if lab.target > 0.5 and not lab.regions]
    added = [
        _labeled_event(start, end, store)
        for start, end in _merged(wanted)
        if not any(event.onset < end and start < event.onset + event.duration for event in kept)
    ]
    if added:
        logger.info("%d labeled spike(s) the model did not find added as events", len(added))
    return sorted(kept + added, key=lambda event: event.peak)


def _window(label: TaskLabel, window_seconds: float) -> Interval:
    return label.onset_seconds, label.onset_seconds + window_seconds


def _inside(time: float, intervals: list[Interval]) -> bool:
    return any(start <= time < end for start, end in intervals)


def _merged(intervals: list[Interval]) -> list[Interval]:
    """Overlapping intervals joined (several clinicians' regions of one spike, overlapping windows)."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _labeled_event(start: float, end: float, store: WindowStore | None) -> Event:
    """A confirmed event for a labeled spike the model missed; peak at the largest model-input deflection."""
    peak, channel = (start + end) / 2, ""
    if store is not None:
        first = max(0, int(np.floor(start * store.sfreq)))
        signal = store.file["signal"][:, first : max(first + 1, int(np.ceil(end * store.sfreq)))]
        scaled = np.nan_to_num(np.abs(signal / store.channel_scale_uv[:, None]))
        if scaled.size:
            row, sample = np.unravel_index(int(np.argmax(scaled)), scaled.shape)
            peak, channel = float((first + sample) / store.sfreq), store.ch_names[row]
    return Event(
        onset=start,
        duration=end - start,
        peak=peak,
        peak_channel=channel,
        probability=1.0,
        channels={channel: 1.0} if channel else {},
        reviewed=CONFIRMED,
    )
