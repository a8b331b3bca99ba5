"""EEGLAB ``.set`` files saved as MATLAB v7.3 (HDF5, group ``EEG``); older ``.set`` files are read by MNE.

Data inline or in the ``.fdt`` file it names (memory-mapped), ``srate``, ``chanlocs.labels``/``type``,
events (``type``, ``latency``, ``duration``) as annotations, microvolts. Epoched files (``trials`` > 1) are
refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._util import default_ch_names, keep_annotations_inside, unique_names
from .array import ArrayRecording, checked_n_times, positive_scalar
from .base import Annotation, RecordingError
from .hdf5 import attr_str, decode_strings, matlab_char

_EEGLAB_TYPES = ("eeg", "seeg", "ecog", "dbs", "eog", "ecg", "emg", "misc")  # chanlocs.type kept as is


def is_eeglab(path: Path) -> bool:
    """Whether the HDF5 file ``path`` holds an EEGLAB structure (group ``EEG`` with srate, nbchan, data)."""
    try:
        with h5py.File(path, "r") as f:
            eeg = f.get("EEG")
            return isinstance(eeg, h5py.Group) and "srate" in eeg and "nbchan" in eeg and "data" in eeg
    except OSError:  # not HDF5: the generic reader says so
        return False


def read_eeglab(path: Path, *, sfreq: float | None = None, ch_names: Sequence[str] | None = None) -> ArrayRecording:
    """Open an EEGLAB v7.3 file lazily; ``sfreq``/``ch_names`` override what the file says."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise RecordingError(f"{path}: not a readable HDF5 file ({exc})") from exc
    try:
        return _eeglab(path, f, sfreq=sfreq, ch_names=ch_names)
    except BaseException:
        f.close()
        raise


def _eeglab(path: Path, f: h5py.File, *, sfreq: float | None, ch_names: Sequence[str] | None) -> ArrayRecording:
    eeg = f["EEG"]
    n_chans = int(positive_scalar(eeg["nbchan"][()]) or 0)
    rate = sfreq or positive_scalar(eeg["srate"][()])
    trials = positive_scalar(eeg["trials"][()]) if "trials" in eeg else 1
    if trials and trials > 1:
        raise RecordingError(f"{path}: epoched EEGLAB file ({int(trials)} trials); only continuous data")
    if not rate:
        raise RecordingError(f"{path}: EEGLAB file without a sampling rate; pass sfreq= (--sfreq)")
    names = list(ch_names) if ch_names is not None else _eeglab_field(f, eeg, "chanlocs", "labels")
    if not names or len(names) != n_chans:
        names = default_ch_names(n_chans)
    types = _eeglab_field(f, eeg, "chanlocs", "type")
    ch_types = [t.lower() if t.lower() in _EEGLAB_TYPES else "eeg" for t in types]
    if len(ch_types) != n_chans:
        ch_types = []
    annotations = _eeglab_events(f, eeg, float(rate))
    source, file = _eeglab_data(path, f, eeg["data"], n_chans)  # closes f when the data is in a .fdt
    n_times = checked_n_times(path, source.shape[0])
    return ArrayRecording.wrap(
        source,
        1,
        1.0,
        file,
        path=path,
        ch_names=unique_names(names),
        ch_types=ch_types,
        sfreq=float(rate),
        n_times=n_times,
        annotations=keep_annotations_inside(path, annotations, n_times / float(rate)),
    )


def _eeglab_data(path: Path, f: h5py.File, data: h5py.Dataset, n_chans: int) -> tuple[Any, h5py.File | None]:
    """The samples as [times, channels]: the inline dataset or the memory-mapped .fdt file."""
    if attr_str(data, ("MATLAB_class",)) == "char":
        fdt = path.parent / (matlab_char(data) or [""])[0]
        if not fdt.is_file():
            raise RecordingError(f"{path}: EEGLAB data file {fdt.name!r} not found next to it")
        size = fdt.stat().st_size
        if n_chans <= 0 or size % (4 * n_chans):
            raise RecordingError(f"{path}: {fdt.name} has {size} bytes, not a whole number of samples")
        f.close()
        return np.memmap(fdt, dtype="<f4", mode="r", shape=(size // (4 * n_chans), n_chans)), None
    if data.ndim != 2 or n_chans not in data.shape:
        raise RecordingError(f"{path}: EEGLAB data of shape {data.shape} does not match {n_chans} channels")
    if data.shape[1] == n_chans:
        return data, f
    return _Transposed(data), f


class _Transposed:
    """A [channels, times] dataset seen as [times, channels]."""

    def __init__(self, ds: h5py.Dataset) -> None:
        self.ds, self.shape = ds, ds.shape[::-1]

    def __getitem__(self, item: tuple[slice, slice]) -> np.ndarray:
        return np.asarray(self.ds[item[1], item[0]]).T


def _eeglab_field(f: h5py.File, eeg: h5py.Group, struct: str, field: str) -> list[str]:
    group = eeg.get(struct)
    if not isinstance(group, h5py.Group) or field not in group:
        return []
    return decode_strings(f, group[field]) or []


def _eeglab_events(f: h5py.File, eeg: h5py.Group, sfreq: float) -> list[Annotation]:
    event = eeg.get("event")
    if not isinstance(event, h5py.Group) or "latency" not in event or "type" not in event:
        return []
    latencies = _ref_values(f, event["latency"])
    types = _ref_values(f, event["type"])
    durations = _ref_values(f, event["duration"]) if "duration" in event else [0.0] * len(latencies)
    out = []
    for latency, kind, duration in zip(latencies, types, durations, strict=False):
        if isinstance(latency, float):
            dur = duration / sfreq if isinstance(duration, float) else 0.0
            if isinstance(kind, float) and kind.is_integer():
                kind = int(kind)  # numeric event codes: "3", not "3.0"
            out.append(Annotation((latency - 1) / sfreq, dur, str(kind)))
    return out


def _ref_values(f: h5py.File, ds: h5py.Dataset) -> list[Any]:
    """Values of a MATLAB struct-array field: numbers as float, chars as str."""
    if h5py.check_ref_dtype(ds.dtype) is None:
        return [float(v) for v in np.asarray(ds[()]).ravel()]
    out: list[Any] = []
    for ref in np.asarray(ds[()]).ravel():
        target = f[ref]
        text = matlab_char(target) if attr_str(target, ("MATLAB_class",)) == "char" else None
        if text is not None:
            out.append(text[0] if text else "")
        else:
            value = np.asarray(target[()]).ravel()
            out.append(float(value[0]) if value.size == 1 and "MATLAB_empty" not in target.attrs else None)
    return out
