"""A patient's detection output (synthetic patient C, one event per true spike) and a small model, for the review
tests."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from detect_helpers import synthetic_detection
from model_helpers import TINY, toy_windows

from converters.windows import WindowStore
from ls_backend.detect.exports import RecordingEvents, write_detection_output
from ls_backend.model.estimator import SpikeDetector


class ReviewPatient(NamedTuple):
    store: Path  # the recording's window store
    detection: Path  # its detection output
    model: SpikeDetector


def review_patient(root: Path, seconds: float = 120) -> ReviewPatient:
    """``seconds`` of synthetic patient C converted under ``root/stores``, its events written as a detection output
    ``root/detection`` (the first event confirmed by a clinician), and a tiny model for the embeddings."""
    found = synthetic_detection(root, seconds)
    with WindowStore(found.store) as store:
        info = {"model_version": "p4-v0002", "threshold": 0.5}
        out = write_detection_output(root / "detection", [RecordingEvents.from_store(store, found.events)], info)
    X, y = toy_windows()
    return ReviewPatient(found.store, out, SpikeDetector(**TINY).fit(X, y))
