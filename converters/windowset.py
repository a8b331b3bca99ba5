"""Window sets: labelled model input in one file, for training, capacity studies and active-learning benchmarks.

Format (``.npz`` or HDF5 ``.h5``/``.hdf5``, same keys in both):

``X``        float32 ``[n_windows, n_chans, n_times]``, robust-scaled per channel (as the window store gives it).
             Windows of recordings with fewer channels than ``n_chans`` are padded with NaN channels: a NaN
             channel is "absent" (the spike model skips it), not a flat signal.
``y``        float32 ``[n_windows]``: 0/1, or a soft label in [0, 1].
``sfreq``    scalar, Hz.
``groups``   optional, str ``[n_windows]``: the patient (or recording) of each window.
``y_dense``  optional, float32 ``[n_windows, n_times]``: the fraction of each sample covered by an epileptiform
             event (the ground truth of spike regions, for dense training and event-level metrics).

:func:`synthetic_windowset` generates the synthetic patients of :mod:`converters.synthetic`, runs them through the
real conversion pipeline (:func:`converters.convert.convert_recording`: EDF+ -> bipolar montage -> 256 Hz ->
filters -> robust scaling -> window store) and labels each window from the recording's events. Its default windows
are 1 s (256 samples at 256 Hz): spikes last 20-200 ms, and a short window gives the model four times more
labelled examples per minute than the 2 s Label Studio tasks (the model is fully convolutional, so a model trained
on 1 s windows scores 2 s task windows unchanged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .labelconfig import EPILEPTIFORM_LABELS
from .readers.base import Annotation
from .tasks import POINT_EVENT_SECONDS, event_label
from .windows import WindowParams, WindowStore

logger = logging.getLogger(__name__)

WINDOWSET_SUFFIXES = (".npz", ".h5", ".hdf5")
DEFAULT_SYNTHETIC_MINUTES = 5.0
DEFAULT_MODEL_WINDOW_SECONDS = 1.0
MIN_OVERLAP_FRACTION = 0.5  # a window is positive when it holds at least half of an epileptiform event


@dataclass
class WindowSet:
    """Labelled windows (see the module docstring for the meaning of each array)."""

    X: np.ndarray
    y: np.ndarray
    sfreq: float
    groups: np.ndarray | None = None
    y_dense: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, np.float32)
        self.y = np.asarray(self.y, np.float32)
        if self.X.ndim != 3:
            raise ValueError(f"X must be [n_windows, n_chans, n_times], got shape {self.X.shape}")
        if self.y.shape != (len(self.X),):
            raise ValueError(f"y must have shape ({len(self.X)},), got {self.y.shape}")
        if np.any((self.y < 0) | (self.y > 1)) or not np.all(np.isfinite(self.y)):
            raise ValueError("y must be in [0, 1]")
        if self.groups is not None:
            self.groups = np.asarray(self.groups).astype(str)
            if self.groups.shape != self.y.shape:
                raise ValueError(f"groups must have shape {self.y.shape}, got {self.groups.shape}")
        if self.y_dense is not None:
            self.y_dense = np.asarray(self.y_dense, np.float32)
            if self.y_dense.shape != (len(self.X), self.X.shape[2]):
                raise ValueError(f"y_dense must have shape {(len(self.X), self.X.shape[2])}, got {self.y_dense.shape}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray | Sequence[int] | Sequence[bool]) -> WindowSet:
        """The windows at ``index`` (indices or a boolean mask)."""
        index = np.asarray(index)
        return WindowSet(
            self.X[index],
            self.y[index],
            self.sfreq,
            None if self.groups is None else self.groups[index],
            None if self.y_dense is None else self.y_dense[index],
        )

    def group(self, *names: str) -> WindowSet:
        """The windows of these patients."""
        if self.groups is None:
            raise ValueError("this window set has no groups")
        return self.subset(np.isin(self.groups, names))


def save_windowset(ws: WindowSet, path: str | os.PathLike) -> Path:
    """Write ``ws`` to ``.npz`` or ``.h5`` (by the suffix), atomically (temporary file, then rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WINDOWSET_SUFFIXES:
        raise ValueError(f"{path}: a window set file must end in {', '.join(WINDOWSET_SUFFIXES)}")
    arrays: dict[str, Any] = {"X": ws.X, "y": ws.y, "sfreq": np.float64(ws.sfreq)}
    if ws.groups is not None:
        arrays["groups"] = ws.groups
    if ws.y_dense is not None:
        arrays["y_dense"] = ws.y_dense
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".npz":
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    else:
        with h5py.File(tmp, "w") as f:
            for key, value in arrays.items():
                if key == "groups":
                    f.create_dataset(key, data=value.astype(object), dtype=h5py.string_dtype("utf-8"))
                elif np.ndim(value) == 0:
                    f.create_dataset(key, data=value)
                else:
                    f.create_dataset(key, data=value, chunks=True, compression="lzf")
    os.replace(tmp, path)
    return path


def load_windowset(path: str | os.PathLike) -> WindowSet:
    """Read a window set written by :func:`save_windowset` (or any file with the same keys)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WINDOWSET_SUFFIXES:
        raise ValueError(f"{path}: a window set file must end in {', '.join(WINDOWSET_SUFFIXES)}")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        else:
            with h5py.File(path, "r") as f:
                arrays = {}
                for key in f:
                    dset = f[key]
                    arrays[key] = dset.asstr()[:] if key == "groups" else dset[()]
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable window set ({err})") from None
    missing = [key for key in ("X", "y", "sfreq") if key not in arrays]
    if missing:
        raise ValueError(f"{path}: window set lacks {', '.join(missing)}")
    return WindowSet(arrays["X"], arrays["y"], float(arrays["sfreq"]), arrays.get("groups"), arrays.get("y_dense"))


def _epileptiform_intervals(annotations: Sequence[Annotation]) -> np.ndarray:
    """``[n, 2]`` (start, end) seconds of the epileptiform events (point markers get ``POINT_EVENT_SECONDS``)."""
    spans = []
    for ann in annotations:
        if event_label(ann.description) not in EPILEPTIFORM_LABELS:
            continue
        start, end = ann.onset_seconds, ann.onset_seconds + ann.duration_seconds
        if ann.duration_seconds <= 0:
            start, end = start - POINT_EVENT_SECONDS / 2, start + POINT_EVENT_SECONDS / 2
        spans.append((start, end))
    return np.array(spans, np.float64).reshape(-1, 2)


def label_windows(
    annotations: Sequence[Annotation], onsets_seconds: np.ndarray, n_times: int, sfreq: float
) -> tuple[np.ndarray, np.ndarray]:
    """Window labels and dense targets from a recording's events.

    A window is positive (1) when it holds at least ``MIN_OVERLAP_FRACTION`` of an epileptiform event (Spike,
    Sharp wave; artifacts are negatives); the dense target is the fraction of each sample covered by an event.
    """
    onsets = np.asarray(onsets_seconds, np.float64)
    spans = _epileptiform_intervals(annotations)
    y = np.zeros(len(onsets), np.float32)
    dense = np.zeros((len(onsets), n_times), np.float32)
    duration = n_times / sfreq
    sample_t = np.arange(n_times + 1) / sfreq  # sample edges, relative to the window onset
    for start, end in spans:
        hit = np.flatnonzero((onsets < end) & (onsets + duration > start))
        for k in hit:
            lo, hi = start - onsets[k], end - onsets[k]
            overlap = min(hi, duration) - max(lo, 0.0)
            if overlap >= MIN_OVERLAP_FRACTION * (end - start):
                y[k] = 1.0
            cover = np.clip(np.minimum(sample_t[1:], hi) - np.maximum(sample_t[:-1], lo), 0, None) * sfreq
            np.maximum(dense[k], cover.astype(np.float32), out=dense[k])
    return y, dense


def windowset_from_store(store: WindowStore, group: str | None = None, batch_size: int = 256) -> WindowSet:
    """Every window of a window store, labelled from the events stored with it (see :func:`label_windows`)."""
    n = len(store)
    X = np.empty((n, store.n_chans, store.window_samples), np.float32)
    for first, (_, batch) in zip(range(0, n, batch_size), store.iter_batches(batch_size)):
        X[first : first + len(batch)] = batch
    y, dense = label_windows(store.annotations(), store.starts / store.sfreq, store.window_samples, store.sfreq)
    groups = None if group is None else np.full(n, group)
    return WindowSet(X, y, store.sfreq, groups, dense)


def concatenate(sets: Sequence[WindowSet]) -> WindowSet:
    """One window set from several, padding channels with NaN (absent) to the largest channel count."""
    if not sets:
        raise ValueError("nothing to concatenate")
    sfreqs = {ws.sfreq for ws in sets}
    n_times = {ws.X.shape[2] for ws in sets}
    if len(sfreqs) > 1 or len(n_times) > 1:
        raise ValueError(f"window sets differ in sfreq {sorted(sfreqs)} or n_times {sorted(n_times)}")
    n_chans = max(ws.X.shape[1] for ws in sets)
    X = np.full((sum(len(ws) for ws in sets), n_chans, n_times.pop()), np.nan, np.float32)
    first = 0
    for ws in sets:
        X[first : first + len(ws), : ws.X.shape[1]] = ws.X
        first += len(ws)
    groups = None
    if all(ws.groups is not None for ws in sets):
        groups = np.concatenate([ws.groups for ws in sets])
    dense = None
    if all(ws.y_dense is not None for ws in sets):
        dense = np.concatenate([ws.y_dense for ws in sets])
    return WindowSet(X, np.concatenate([ws.y for ws in sets]), sets[0].sfreq, groups, dense)


def export_windowset(
    store_paths: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike], out: str | os.PathLike
) -> WindowSet:
    """Window stores (with their recordings' events) -> one window set file; a mapping gives each store a group."""
    items = store_paths.items() if isinstance(store_paths, Mapping) else [(Path(p).stem, p) for p in store_paths]
    sets = []
    for group, path in items:
        with WindowStore(path) as store:
            ws = windowset_from_store(store, group)
        if not np.any(ws.y):
            logger.warning("%s: no window holds an epileptiform event", path)
        sets.append(ws)
    ws = concatenate(sets)
    save_windowset(ws, out)
    logger.info("wrote %s: %d windows (%d positive), %d channels", out, len(ws), int(ws.y.sum()), ws.X.shape[1])
    return ws


def synthetic_windowset(
    patients: Sequence[str] = ("A", "B", "C", "D"),
    minutes: float | Mapping[str, float] = DEFAULT_SYNTHETIC_MINUTES,
    window_seconds: float = DEFAULT_MODEL_WINDOW_SECONDS,
    stride_seconds: float | None = None,
    out: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> WindowSet:
    """Synthetic patients through the real pipeline (EDF+ -> window store) -> a labelled window set.

    ``minutes`` may differ per patient (a mapping). With ``cache_dir``, the result is kept there under a name
    derived from the arguments and reused by later calls (generation takes a few seconds per patient-minute).
    """
    from .synthetic import PATIENTS, write_edf  # heavy imports (MNE) only when generating

    per_patient = {p: float(minutes[p] if isinstance(minutes, Mapping) else minutes) for p in patients}
    unknown = [p for p in patients if p not in PATIENTS]
    if unknown:
        raise ValueError(f"unknown synthetic patient(s) {unknown}; known: {sorted(PATIENTS)}")
    key = json.dumps([per_patient, window_seconds, stride_seconds], sort_keys=True)
    cached = None
    if cache_dir is not None:
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        cached = Path(cache_dir) / f"synthetic_{''.join(patients)}_{digest}.npz"
        if cached.exists():
            ws = load_windowset(cached)
            if out is not None:
                save_windowset(ws, out)
            return ws
    window_params = WindowParams(window_seconds, stride_seconds)
    sets = []
    with tempfile.TemporaryDirectory(prefix="windowset-") as tmp:
        for name in patients:
            edf = write_edf(Path(tmp) / f"{name}.edf", PATIENTS[name], per_patient[name] * 60.0)
            sets.append(_converted(edf, name, window_params, Path(tmp)))
    ws = concatenate(sets)
    for target in (cached, out):
        if target is not None:
            save_windowset(ws, target)
    logger.info("synthetic window set %s: %d windows, %d positive", list(patients), len(ws), int(ws.y.sum()))
    return ws


def _converted(source: Path, group: str, window_params: WindowParams, tmp: Path) -> WindowSet:
    """One recording through the conversion pipeline into a labelled window set (its store is left in ``tmp``)."""
    from .convert import convert_recording

    store = tmp / f"{group}-{source.stem}.h5"
    convert_recording(source, store, window_params=window_params)
    with WindowStore(store) as st:
        return windowset_from_store(st, group)


def recording_group(path: Path) -> str:
    """The group of a recording: its BIDS subject (``sub-P01_..._ieeg.edf`` -> ``P01``), else the file's stem."""
    from .readers.bids import bids_entities

    return bids_entities(path).get("subject") or path.name.split(".", 1)[0]


def windowset_from_recordings(
    paths: Sequence[str | os.PathLike],
    window_seconds: float = DEFAULT_MODEL_WINDOW_SECONDS,
    stride_seconds: float | None = None,
) -> WindowSet:
    """Recordings with their events (EDF+ annotations, BIDS ``events.tsv``, ...) -> one labelled window set.

    Each path is a recording or a folder (a BIDS dataset or subject: see
    :func:`converters.readers.find_recordings`); each recording goes through the real conversion pipeline and its
    windows are labelled from its events; the group is the BIDS subject (else the file name), so a subject's runs
    form one patient. Only use recordings whose events are complete: an unmarked spike becomes a negative.
    """
    from .readers import find_recordings

    sources = [rec for path in paths for rec in find_recordings(path)]
    if not sources:
        raise ValueError(f"no recording found in {', '.join(str(p) for p in paths)}")
    window_params = WindowParams(window_seconds, stride_seconds)
    with tempfile.TemporaryDirectory(prefix="windowset-") as tmp:
        sets = [_converted(Path(src), recording_group(Path(src)), window_params, Path(tmp)) for src in sources]
    ws = concatenate(sets)
    logger.info("%d recording(s) -> %d windows, %d positive", len(sources), len(ws), int((ws.y >= 0.5).sum()))
    return ws


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m converters.windowset synthetic|export ...``: write a window set file."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m converters.windowset", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    syn = sub.add_parser("synthetic", help="synthetic patients through the real conversion pipeline")
    syn.add_argument("out", type=Path, help="output file (.npz, .h5)")
    syn.add_argument("--patients", nargs="+", default=["A", "B", "C", "D"])
    syn.add_argument("--minutes", type=float, default=DEFAULT_SYNTHETIC_MINUTES, help="per patient")
    syn.add_argument("--window", type=float, default=DEFAULT_MODEL_WINDOW_SECONDS, help="window length, seconds")
    syn.add_argument("--stride", type=float, default=None, help="window stride, seconds (default: no overlap)")
    exp = sub.add_parser("export", help="window stores (with their recordings' events) -> one window set")
    exp.add_argument("out", type=Path, help="output file (.npz, .h5)")
    exp.add_argument("stores", nargs="+", type=Path, help="window stores; each store's name is its group")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "synthetic":
        ws = synthetic_windowset(tuple(args.patients), args.minutes, args.window, args.stride, out=args.out)
    else:
        ws = export_windowset(args.stores, args.out)
    print(
        f"{args.out}: {len(ws)} windows ({int((ws.y >= 0.5).sum())} positive), {ws.X.shape[1]} channels, "
        f"{ws.X.shape[2]} samples at {ws.sfreq:g} Hz"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
