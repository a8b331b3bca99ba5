"""Writers of synthetic recordings: EDF+ (with the events as annotations), HDF5, events.tsv, BIDS iEEG."""

from __future__ import annotations

import csv
import json
import logging
import math
import queue
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np

from .edf import EdfSpec, EdfWriter
from .events import SyntheticEvent, make_events
from .profiles import ARTIFACT_KINDS, SPIKE_KINDS, PatientProfile, physical_range_uv
from .signals import iter_chunks

logger = logging.getLogger(__name__)

DEFAULT_START = datetime(2024, 1, 1, 8, 0, 0)


def write_edf(
    path: str | Path,
    profile: PatientProfile,
    duration_seconds: float,
    with_annotations: bool = True,
    chunk_seconds: int = 10,
    start: datetime = DEFAULT_START,
) -> Path:
    """Write an EDF+C file (int16, 1-second records, uV, the events as annotations), chunk by chunk.

    The duration is rounded up to whole seconds. Labels are the plain channel names (MNE keeps
    ``"SEEG A1"`` as the name unless ``infer_types=True``); the transducer field says SEEG.
    """
    path = Path(path)
    n_records = max(1, math.ceil(duration_seconds - 1e-9))
    events = make_events(profile, n_records) if with_annotations else []
    range_uv = physical_range_uv(profile)
    name = profile.name.replace(" ", "_")
    spec = EdfSpec(
        labels=tuple(profile.ch_names),
        sfreq=profile.sfreq,
        physical_range=(-range_uv, range_uv),
        transducer="SEEG depth electrode",
        start=start,
        patient=f"SYN-{name} X X Synthetic_{name}",
        recording="X X synthetic",
    )
    annotations = [(e.onset_seconds, e.duration_seconds, e.kind) for e in events] if with_annotations else None
    with EdfWriter(path, spec, n_records, annotations) as writer:
        for chunk in prefetch(iter_chunks(profile, n_records, max(1, int(chunk_seconds)))):
            writer.write(chunk)
    if writer.clipped:
        logger.warning("%s: %d samples clipped to +/-%g uV", path, writer.clipped, range_uv)
    logger.info(
        "wrote %s: %d channels, %d s at %g Hz, %d events", path, profile.n_chans, n_records, profile.sfreq, len(events)
    )
    return path


def write_hdf5(
    path: str | Path,
    profile: PatientProfile,
    duration_seconds: float,
    dtype: str = "float32",
    chunk_seconds: float = 10.0,
) -> Path:
    """Write dataset ``data`` [n_chans, n_times] with attrs ``sfreq``, ``ch_names``, ``units``="uV".

    With ``dtype="int16"`` the attribute ``scale_uv`` gives microvolts per count.
    """
    path = Path(path)
    n_chans = profile.n_chans
    n_times = round(duration_seconds * profile.sfreq)
    dt = np.dtype(dtype)
    scale = physical_range_uv(profile) / 32767.0 if dt == np.int16 else 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(
            "data", shape=(n_chans, n_times), dtype=dt, chunks=(n_chans, max(1, min(n_times, 8192)))
        )
        dset.attrs["sfreq"] = float(profile.sfreq)
        dset.attrs["ch_names"] = np.array(profile.ch_names, dtype=h5py.string_dtype())
        dset.attrs["units"] = "uV"
        dset.attrs["scale_uv"] = scale
        for key in ("sfreq", "ch_names", "units", "scale_uv"):
            f.attrs[key] = dset.attrs[key]
        f.attrs["patient"] = profile.name
        f.attrs["seed"] = profile.seed
        s0 = 0
        for chunk in prefetch(iter_chunks(profile, duration_seconds, chunk_seconds)):
            if dt == np.int16:
                chunk = np.clip(np.rint(chunk / scale), -32767, 32767)
            dset[:, s0 : s0 + chunk.shape[1]] = chunk.astype(dt, copy=False)
            s0 += chunk.shape[1]
    logger.info("wrote %s: %d channels x %d samples (%s)", path, n_chans, n_times, dt)
    return path


EVENTS_COLUMNS = ("onset", "duration", "trial_type", "channels", "peak")


def write_events_tsv(path: str | Path, events: Iterable[SyntheticEvent]) -> Path:
    """BIDS-style events.tsv: onset, duration, trial_type, channels (comma-joined), peak (s)."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(EVENTS_COLUMNS)
        for ev in events:
            writer.writerow(
                [
                    f"{ev.onset_seconds:.6f}",
                    f"{ev.duration_seconds:.6f}",
                    ev.kind,
                    ",".join(ev.channels),
                    f"{ev.peak_seconds:.6f}",
                ]
            )
    return path


def read_events_tsv(path: str | Path) -> list[SyntheticEvent]:
    """Events written by :func:`write_events_tsv`."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        SyntheticEvent(
            onset_seconds=float(r["onset"]),
            duration_seconds=float(r["duration"]),
            kind=r["trial_type"],
            channels=[c for c in r["channels"].split(",") if c],
            peak_seconds=float(r["peak"]),
        )
        for r in rows
    ]


def write_bids(
    root: str | Path, subject: str, profile: PatientProfile, duration_seconds: float, fmt: str = "edf"
) -> Path:
    """Write a BIDS iEEG dataset for one subject; returns the path of the recording file."""
    if fmt != "edf":
        raise ValueError(f"BIDS output supports fmt='edf' only, got {fmt!r}")
    root = Path(root)
    ieeg = root / f"sub-{subject}" / "ieeg"
    ieeg.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{subject}_task-rest"
    duration_seconds = max(1, math.ceil(duration_seconds - 1e-9))
    recording = write_edf(ieeg / f"{stem}_ieeg.edf", profile, duration_seconds)
    _write_channels_tsv(ieeg / f"{stem}_channels.tsv", profile)
    write_events_tsv(ieeg / f"{stem}_events.tsv", make_events(profile, duration_seconds))
    _write_json(ieeg / f"{stem}_events.json", _EVENTS_SIDECAR)
    _write_json(ieeg / f"{stem}_ieeg.json", _ieeg_sidecar(profile, duration_seconds))
    description = root / "dataset_description.json"
    if not description.exists():
        _write_json(
            description,
            {
                "Name": "spike-al synthetic sEEG",
                "BIDSVersion": "1.9.0",
                "DatasetType": "raw",
                "GeneratedBy": [{"Name": "converters.synthetic"}],
            },
        )
    return recording


def _write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")


def _write_channels_tsv(path: Path, profile: PatientProfile) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["name", "type", "units", "low_cutoff", "high_cutoff", "sampling_frequency", "group", "status"])
        for shaft, n in profile.shafts:
            for i in range(1, n + 1):
                row = [f"{shaft}{i}", "SEEG", "uV", "n/a", "n/a", f"{profile.sfreq:g}", shaft, "good"]
                writer.writerow(row)


def _ieeg_sidecar(profile: PatientProfile, duration_seconds: float) -> dict:
    return {
        "TaskName": "rest",
        "SamplingFrequency": float(profile.sfreq),
        "PowerLineFrequency": float(profile.line_freq_hz),
        "SoftwareFilters": "n/a",
        "iEEGReference": "synthetic common reference",
        "SEEGChannelCount": profile.n_chans,
        "ECOGChannelCount": 0,
        "EEGChannelCount": 0,
        "RecordingDuration": float(duration_seconds),
        "RecordingType": "continuous",
        "Manufacturer": "n/a (synthetic: converters.synthetic)",
        "SyntheticPatient": profile.name,
        "SyntheticSeed": profile.seed,
    }


_EVENTS_SIDECAR = {
    "trial_type": {
        "Description": "Event kind. Epileptiform (truth): "
        + ", ".join(SPIKE_KINDS)
        + ". Spike-like artifacts (hard negatives): "
        + ", ".join(ARTIFACT_KINDS)
        + ".",
    },
    "channels": {"Description": "Comma-separated channels the event appears on, main channel first."},
    "peak": {"Description": "Time of the main peak on the main channel.", "Units": "s"},
}


def prefetch(chunks: Iterator[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """Run ``chunks`` in a thread, ``depth`` items ahead (generation overlaps writing)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in chunks:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # re-raised in the consumer
            put(exc)

    thread = threading.Thread(target=produce, name="synthetic-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
