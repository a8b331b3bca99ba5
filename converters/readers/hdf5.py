"""HDF5 (``.h5``, ``.hdf5``) and MATLAB v7.3 ``.mat`` files (HDF5 inside).

* data: the dataset named by ``dataset=`` or else the largest 2-D numeric dataset;
* orientation: ``orientation="channels_first"`` or ``"times_first"``, else inferred: the axis whose length
  matches the channel names found, else the shorter axis holds the channels (MATLAB v7.3 files appear
  transposed in HDF5; the inference makes that irrelevant);
* sampling rate: ``sfreq=`` or an attribute (on the dataset, its groups, the file) or a scalar dataset named
  sfreq, fs, srate, sampling_rate, sample_rate, samplingrate, sampling_frequency or fsample (also inside
  MATLAB structs); when none is found: :class:`RecordingError` asking for ``sfreq=`` (``--sfreq``);
* channel names: ``ch_names=`` or an attribute/dataset named ch_names, channels, channel_names, labels,
  label, chanlocs, electrodes (string arrays, MATLAB char matrices, MATLAB cell arrays of char - object
  references to uint16 arrays); else ``ch01``, ``ch02``, ...;
* units: ``units=`` or a ``units``/``unit`` attribute of the dataset (uV, mV, V, nV); default microvolts;
* channel types ``eeg``; no annotations.

The file stays open in the Recording (closed by ``close()``) and slices are read lazily. The MATLAB string
helpers here (char matrices, cell arrays of char) serve the EEGLAB v7.3 reader too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._util import default_ch_names, unique_names
from .array import (
    CH_NAME_NAMES,
    ORIENTATIONS,
    SFREQ_NAMES,
    ArrayRecording,
    checked_n_times,
    infer_orientation,
    positive_scalar,
    uv_scale,
)
from .base import RecordingError

logger = logging.getLogger(__name__)


def read_hdf5(
    path: Path,
    *,
    dataset: str | None = None,
    sfreq: float | None = None,
    ch_names: Sequence[str] | None = None,
    units: str | None = None,
    orientation: str | None = None,
) -> ArrayRecording:
    """Open an HDF5 file (also MATLAB v7.3 ``.mat``) lazily."""
    path = Path(path)
    if orientation is not None and orientation not in ORIENTATIONS:
        raise RecordingError(f"{path}: orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise RecordingError(f"{path}: not a readable HDF5 file ({exc})") from exc
    try:
        return _generic(path, f, dataset, sfreq, ch_names, units, orientation)
    except BaseException:
        f.close()
        raise


def _generic(
    path: Path,
    f: h5py.File,
    dataset: str | None,
    sfreq: float | None,
    ch_names: Sequence[str] | None,
    units: str | None,
    orientation: str | None,
) -> ArrayRecording:
    ds = _pick_dataset(path, f, dataset)
    found = [list(ch_names)] if ch_names is not None else list(_name_candidates(f, ds))
    axis, names = infer_orientation(path, ds.shape, orientation, found, explicit=ch_names is not None)
    rate = sfreq if sfreq is not None else _find_sfreq(f, ds)
    if rate is None:
        raise RecordingError(
            f"{path}: no sampling rate found in the file (no attribute or scalar dataset named "
            f"{', '.join(SFREQ_NAMES)}); pass sfreq= (command line: --sfreq)"
        )
    scale = uv_scale(path, units if units is not None else attr_str(ds, ("units", "unit")))
    n_chans, n_times = ds.shape[axis], ds.shape[1 - axis]
    logger.info("%s: dataset %s, %d channels x %d samples at %g Hz", path, ds.name, n_chans, n_times, rate)
    return ArrayRecording.wrap(
        ds,
        axis,
        scale,
        f,
        path=path,
        ch_names=unique_names(names) if names else default_ch_names(n_chans),
        sfreq=float(rate),
        n_times=checked_n_times(path, n_times),
    )


def _pick_dataset(path: Path, f: h5py.File, name: str | None) -> h5py.Dataset:
    candidates = dict(_numeric_2d(f))
    if name is not None:
        obj = f.get(name)
        if not isinstance(obj, h5py.Dataset) or obj.ndim != 2 or obj.dtype.kind not in "iuf":
            raise RecordingError(
                f"{path}: dataset {name!r} is not a 2-D numeric dataset "
                f"(2-D numeric datasets: {', '.join(candidates) or 'none'})"
            )
        return obj
    if not candidates:
        raise RecordingError(f"{path}: no 2-D numeric dataset in the file")
    best = max(candidates.values(), key=lambda d: d.size)
    if len(candidates) > 1:
        others = ", ".join(candidates)
        logger.info("%s: using the largest 2-D dataset %s (2-D datasets: %s)", path, best.name, others)
    return best


def _numeric_2d(f: h5py.File) -> Iterator[tuple[str, h5py.Dataset]]:
    for name, obj in _datasets(f):
        matlab_class = attr_str(obj, ("MATLAB_class",))
        numeric = obj.ndim == 2 and obj.dtype.kind in "iuf" and matlab_class not in ("char", "logical")
        if numeric and "MATLAB_empty" not in obj.attrs and min(obj.shape) > 0:
            yield name, obj


def _datasets(f: h5py.File) -> list[tuple[str, h5py.Dataset]]:
    """All datasets, shallowest first, outside MATLAB's hidden ``#refs#``/``#subsystem#`` groups."""
    found: list[tuple[str, h5py.Dataset]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and not name.startswith("#"):
            found.append((name, obj))

    f.visititems(visit)
    return sorted(found, key=lambda item: item[0].count("/"))


def _find_sfreq(f: h5py.File, ds: h5py.Dataset) -> float | None:
    """Sampling rate from attributes (dataset, its groups, the file), then from scalar datasets."""
    obj: Any = ds
    while True:
        for key, value in obj.attrs.items():
            if key.lower() in SFREQ_NAMES:
                rate = positive_scalar(value)
                if rate:
                    return rate
        if obj.name == "/":
            break
        obj = obj.parent
    for name, candidate in _datasets(f):
        if name.rsplit("/", 1)[-1].lower() in SFREQ_NAMES and candidate.size == 1:
            rate = positive_scalar(candidate[()])
            if rate:
                return rate
    return None


def _name_candidates(f: h5py.File, ds: h5py.Dataset) -> Iterator[list[str]]:
    """Channel-name lists found in attributes, then datasets/struct fields with a known name."""
    for obj in (ds, f):
        for key, value in obj.attrs.items():
            if key.lower() in CH_NAME_NAMES:
                names = strings_from_value(value)
                if names:
                    yield names
    for name, candidate in _datasets(f):
        parts = [p.lower() for p in name.split("/")]
        if parts[-1] in CH_NAME_NAMES or parts[-2:] == ["chanlocs", "labels"]:
            names = decode_strings(f, candidate)
            if names:
                yield names


def strings_from_value(value: Any) -> list[str] | None:
    arr = np.asarray(value).ravel()
    if arr.dtype.kind in "SUO":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr]
    return None


def decode_strings(f: h5py.File, ds: h5py.Dataset) -> list[str] | None:
    """Strings stored as an HDF5 string array, a MATLAB char matrix or a MATLAB cell array of char."""
    if h5py.check_ref_dtype(ds.dtype) is not None:
        out = []
        for ref in np.asarray(ds[()]).ravel():
            target = f[ref] if ref else None
            text = matlab_char(target) if isinstance(target, h5py.Dataset) else None
            if text is None:
                return None
            out.extend(text)
        return [s.strip() for s in out]
    if ds.dtype.kind in "SUO":
        return strings_from_value(ds[()])
    text = matlab_char(ds)
    return [s.strip() for s in text] if text is not None else None


def matlab_char(ds: h5py.Dataset) -> list[str] | None:
    """A MATLAB char array (uint16 codes, transposed in HDF5): one string per MATLAB row."""
    if attr_str(ds, ("MATLAB_class",)) != "char" and not (ds.dtype == np.uint16 and ds.ndim == 2):
        return None
    if "MATLAB_empty" in ds.attrs:
        return [""]
    codes = np.asarray(ds[()])
    if codes.dtype.kind not in "iu":
        return None
    codes = codes.reshape(codes.shape[0], -1)
    return ["".join(chr(c) for c in column if c).rstrip("\x00") for column in codes.T]


def attr_str(obj: Any, keys: Sequence[str]) -> str | None:
    for key in keys:
        if key in obj.attrs:
            value = obj.attrs[key]
            if isinstance(value, bytes | np.bytes_):
                return value.decode("utf-8", "replace")
            if isinstance(value, str):
                return value
    return None
