"""Where each reviewed detection lives: its recording's window store and peak, read back from a detection output,
and the model-input windows centred on the peaks that review answers train on.

A member is an event of a detection output (:mod:`ls_backend.detect.exports`), named
``<recording stem>@<peak in ms>`` (:func:`ls_backend.review.clusters.event_id`). The clustering keeps a
:class:`Member` per id (store path, peak, peak channel), so that a retraining finds the member's window without the
detection output.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from converters.windows import WindowStore
from ls_backend.detect.events import Event
from ls_backend.detect.exports import MARKER, is_detection_output, read_table
from ls_backend.detect.reviewed import CONFIRMED, store_key
from ls_backend.detect.scoring import read_signal
from ls_backend.labels import TaskLabel
from ls_backend.project_state import read_json

from .clusters import centred_start, event_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """One detection under review: its ``recording`` (stem), ``store`` (the window store's path), ``peak``
    (seconds from the recording's start) and ``channel`` (the peak channel)."""

    id: str
    recording: str
    store: str
    peak: float
    channel: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Member:
        return cls(str(data["id"]), str(data["recording"]), str(data["store"]), float(data["peak"]),
                   str(data["channel"]))  # fmt: skip


@dataclass(frozen=True)
class RecordingDetections:
    """The events of one recording of a detection output, with its window store."""

    stem: str
    store: str
    events: list[Event]


def event_of_row(row: Mapping[str, str]) -> Event:
    """An event from a row of ``<stem>_events.tsv`` (:func:`ls_backend.detect.exports.event_row`)."""
    channels = {}
    for part in filter(None, row.get("channels", "").split(",")):
        name, _, probability = part.rpartition(":")
        channels[name] = float(probability)
    return Event(
        onset=float(row["onset"]),
        duration=float(row["duration"]),
        peak=float(row["peak"]),
        peak_channel=row["channel"],
        probability=float(row["probability"]),
        channels=channels,
        reviewed="" if row.get("reviewed", "n/a") == "n/a" else row["reviewed"],
        model_version="" if row.get("model_version", "n/a") == "n/a" else row["model_version"],
    )


def read_detection(out: Path) -> list[RecordingDetections]:
    """Each recording of the detection output ``out`` with its events (ValueError naming the file when it is not
    one)."""
    summary = read_json(Path(out) / MARKER)
    if summary is None or not is_detection_output(Path(out)):
        raise ValueError(f"{out}: not a detection output (no readable {MARKER}; run python -m ls_backend.detect)")
    recordings = []
    for rec in summary["recordings"]:
        table = Path(out) / f"{rec['stem']}_events.tsv"
        try:
            rows = read_table(table)
            events = [event_of_row(row) for row in rows]
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{table}: unreadable events table ({err})") from None
        recordings.append(RecordingDetections(str(rec["stem"]), str(rec["store"]), events))
    return recordings


def unreviewed(events: Iterable[Event]) -> list[Event]:
    """The events no clinician decided (those in a window labeled a spike are ``confirmed`` already)."""
    return [event for event in events if event.reviewed != CONFIRMED]


def members_of(recording: RecordingDetections, events: Sequence[Event]) -> dict[str, Member]:
    """The members (by id) of ``events`` of one recording."""
    return {
        event_id(recording.stem, e): Member(event_id(recording.stem, e), recording.stem, recording.store, e.peak,
                                            e.peak_channel)
        for e in events
    }  # fmt: skip


def member_windows(members: Sequence[Member], n_times: int) -> np.ndarray:
    """Model input ``[n, n_chans, n_times]`` centred on each member's peak, every channel (what a review label trains
    on); ValueError naming the store when one is unreadable or shorter than a window, or stores differ in channels."""
    by_store: dict[str, list[int]] = defaultdict(list)
    for k, member in enumerate(members):
        by_store[member.store].append(k)
    parts: list[np.ndarray] = [np.empty(0, np.float32)] * len(members)
    for path, rows in by_store.items():
        with WindowStore(path) as store:
            length = int(store.file["signal"].shape[1])
            if length < n_times:
                raise ValueError(f"{path}: {length} samples, shorter than one window of {n_times}")
            for k in rows:
                start = centred_start(members[k].peak, store.sfreq, n_times, length)
                parts[k] = np.asarray(read_signal(store, start, start + n_times), np.float32)
    shapes = {part.shape for part in parts}
    if len(shapes) > 1:
        raise ValueError(f"reviewed detections come from stores of different channels: {sorted(shapes)}")
    return np.stack(parts) if parts else np.zeros((0, 0, n_times), np.float32)


def clinician_labeled(members: Collection[Member], labels: Sequence[TaskLabel], window_store_dir: Path) -> set[str]:
    """The members whose peak lies in a window a clinician labeled (in the same store): their window label wins."""
    by_store: dict[str, list[Member]] = defaultdict(list)
    for member in members:
        by_store[member.store].append(member)
    found: set[str] = set()
    for path, inside in by_store.items():
        key = store_key(Path(path), window_store_dir)
        own = [lab for lab in labels if key is None or lab.store == key]
        if not own or not Path(path).is_file():
            continue
        with WindowStore(path) as store:
            seconds = store.window_samples / store.sfreq
            known = set(store.ids)
        windows = [(lab.onset_seconds, lab.onset_seconds + seconds) for lab in own if lab.window_id in known]
        found |= {m.id for m in inside if any(start <= m.peak < end for start, end in windows)}
    return found
