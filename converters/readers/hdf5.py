"""HDF5 (``.h5``, ``.hdf5``), MATLAB ``.mat`` and EEGLAB ``.set`` saved as MATLAB v7.3 (HDF5).

Generic HDF5 / MATLAB files:

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

The file stays open in the Recording (closed by ``close()``) and slices are read lazily.

EEGLAB v7.3 ``.set`` files (group ``EEG``): data inline or in the ``.fdt`` file it names (memory-mapped),
``srate``, ``chanlocs.labels``/``type``, events (``type``, ``latency``, ``duration``) as annotations,
microvolts. Epoched files (``trials`` > 1) are refused.

MATLAB files older than v7.3 are read with :func:`scipy.io.loadmat` (whole file in memory) with the same
search rules.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._util import default_ch_names, keep_annotations_inside, unique_names, uv_per_unit
from .base import Annotation, Recording, RecordingError

logger = logging.getLogger(__name__)

SFREQ_NAMES = (
    "sfreq",
    "fs",
    "srate",
    "sampling_rate",
    "sample_rate",
    "samplingrate",
    "sampling_frequency",
    "fsample",
)
CH_NAME_NAMES = ("ch_names", "channels", "channel_names", "labels", "label", "chanlocs", "electrodes")
ORIENTATIONS = ("channels_first", "times_first")
_EEGLAB_TYPES = ("eeg", "seeg", "ecog", "dbs", "eog", "ecg", "emg", "misc")  # chanlocs.type kept as is


class ArrayRecording(Recording):
    """Samples from an array-like (h5py dataset, numpy memmap or array) sliced lazily."""

    _source: Any
    _channel_axis: int
    _scale: float
    _file: h5py.File | None

    @classmethod
    def wrap(cls, source: Any, channel_axis: int, scale: float, file: h5py.File | None, **meta: Any):
        """Build the Recording around ``source`` (meta: Recording fields)."""
        rec = cls(**meta)
        rec._source, rec._channel_axis, rec._scale, rec._file = source, channel_axis, scale, file
        return rec

    def _read(self, start: int, stop: int, picks: list[int]) -> np.ndarray:
        if self._source is None:
            raise RecordingError(f"{self.path}: the recording is closed")
        try:
            if self._channel_axis == 0:
                block = np.asarray(self._source[:, start:stop])[picks]
            else:
                block = np.asarray(self._source[start:stop, :])[:, picks].T
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot read samples {start}:{stop}: {exc}") from exc
        out = block.astype(np.float32)
        if self._scale != 1.0:
            out *= np.float32(self._scale)
        return out

    def close(self) -> None:
        """Close the HDF5 file (or drop the memory map)."""
        self._source = None
        if self._file is not None:
            self._file.close()
            self._file = None


def read_hdf5(
    path: Path,
    *,
    dataset: str | None = None,
    sfreq: float | None = None,
    ch_names: Sequence[str] | None = None,
    units: str | None = None,
    orientation: str | None = None,
) -> ArrayRecording:
    """Open an HDF5 file (also MATLAB v7.3 ``.mat`` and EEGLAB v7.3 ``.set``) lazily."""
    path = Path(path)
    if orientation is not None and orientation not in ORIENTATIONS:
        raise RecordingError(f"{path}: orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise RecordingError(f"{path}: not a readable HDF5 file ({exc})") from exc
    try:
        if dataset is None and _is_eeglab(f):
            return _eeglab(path, f, sfreq=sfreq, ch_names=ch_names)
        return _generic(path, f, dataset, sfreq, ch_names, units, orientation)
    except BaseException:
        f.close()
        raise


def read_mat(path: Path, **options: Any) -> Recording:
    """MATLAB ``.mat``: v7.3 (HDF5) lazily, older versions through scipy (loaded in memory)."""
    if h5py.is_hdf5(path):
        return read_hdf5(path, **options)
    return _read_mat_v5(Path(path), **options)


# --- generic HDF5 ---------------------------------------------------------------------------------


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
    axis, names = _orientation(path, ds.shape, orientation, found, explicit=ch_names is not None)
    rate = sfreq if sfreq is not None else _find_sfreq(f, ds)
    if rate is None:
        raise RecordingError(
            f"{path}: no sampling rate found in the file (no attribute or scalar dataset named "
            f"{', '.join(SFREQ_NAMES)}); pass sfreq= (command line: --sfreq)"
        )
    scale = _scale(path, units if units is not None else _attr_str(ds, ("units", "unit")))
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
        n_times=_nonzero(path, n_times),
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
        matlab_class = _attr_str(obj, ("MATLAB_class",))
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


def _orientation(
    path: Path, shape: tuple[int, ...], orientation: str | None, found: list[list[str]], explicit: bool
) -> tuple[int, list[str] | None]:
    """Channel axis (0 or 1) and the channel names that fit it."""
    if orientation is not None:
        axis = ORIENTATIONS.index(orientation)
    else:
        axes = {axis for names in found for axis in (0, 1) if len(names) == shape[axis]}
        if len(axes) == 1:
            axis = axes.pop()
        else:
            axis = 0 if shape[0] <= shape[1] else 1
            if shape[0] == shape[1]:
                logger.warning("%s: square data %s: assuming channels first", path, shape)
    names = next((n for n in found if len(n) == shape[axis]), None)
    if explicit and names is None:
        raise RecordingError(f"{path}: {len(found[0])} channel names given for data of shape {shape}")
    return axis, names


def _find_sfreq(f: h5py.File, ds: h5py.Dataset) -> float | None:
    """Sampling rate from attributes (dataset, its groups, the file), then from scalar datasets."""
    obj: Any = ds
    while True:
        for key, value in obj.attrs.items():
            if key.lower() in SFREQ_NAMES:
                rate = _scalar(value)
                if rate:
                    return rate
        if obj.name == "/":
            break
        obj = obj.parent
    for name, candidate in _datasets(f):
        if name.rsplit("/", 1)[-1].lower() in SFREQ_NAMES and candidate.size == 1:
            rate = _scalar(candidate[()])
            if rate:
                return rate
    return None


def _scalar(value: Any) -> float | None:
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    return float(arr[0]) if arr.size == 1 and np.isfinite(arr[0]) and arr[0] > 0 else None


def _name_candidates(f: h5py.File, ds: h5py.Dataset) -> Iterator[list[str]]:
    """Channel-name lists found in attributes, then datasets/struct fields with a known name."""
    for obj in (ds, f):
        for key, value in obj.attrs.items():
            if key.lower() in CH_NAME_NAMES:
                names = _strings_from_value(value)
                if names:
                    yield names
    for name, candidate in _datasets(f):
        parts = [p.lower() for p in name.split("/")]
        if parts[-1] in CH_NAME_NAMES or parts[-2:] == ["chanlocs", "labels"]:
            names = decode_strings(f, candidate)
            if names:
                yield names


def _strings_from_value(value: Any) -> list[str] | None:
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
            text = _matlab_char(target) if isinstance(target, h5py.Dataset) else None
            if text is None:
                return None
            out.extend(text)
        return [s.strip() for s in out]
    if ds.dtype.kind in "SUO":
        return _strings_from_value(ds[()])
    text = _matlab_char(ds)
    return [s.strip() for s in text] if text is not None else None


def _matlab_char(ds: h5py.Dataset) -> list[str] | None:
    """A MATLAB char array (uint16 codes, transposed in HDF5): one string per MATLAB row."""
    if _attr_str(ds, ("MATLAB_class",)) != "char" and not (ds.dtype == np.uint16 and ds.ndim == 2):
        return None
    if "MATLAB_empty" in ds.attrs:
        return [""]
    codes = np.asarray(ds[()])
    if codes.dtype.kind not in "iu":
        return None
    codes = codes.reshape(codes.shape[0], -1)
    return ["".join(chr(c) for c in column if c).rstrip("\x00") for column in codes.T]


def _attr_str(obj: Any, keys: Sequence[str]) -> str | None:
    for key in keys:
        if key in obj.attrs:
            value = obj.attrs[key]
            if isinstance(value, bytes | np.bytes_):
                return value.decode("utf-8", "replace")
            if isinstance(value, str):
                return value
    return None


def _scale(path: Path, units: str | None) -> float:
    if units is None:
        logger.info("%s: no units given or found, assuming microvolts", path)
        return 1.0
    factor = uv_per_unit(units)
    if factor is None:
        raise RecordingError(f"{path}: unknown units {units!r} (expected uV, mV, V or nV)")
    return factor


def _nonzero(path: Path, n_times: int) -> int:
    if n_times <= 0:
        raise RecordingError(f"{path}: the recording has no samples (zero-length)")
    return int(n_times)


# --- EEGLAB v7.3 ----------------------------------------------------------------------------------


def _is_eeglab(f: h5py.File) -> bool:
    eeg = f.get("EEG")
    return isinstance(eeg, h5py.Group) and "srate" in eeg and "nbchan" in eeg and "data" in eeg


def _eeglab(
    path: Path, f: h5py.File, *, sfreq: float | None, ch_names: Sequence[str] | None
) -> ArrayRecording:
    eeg = f["EEG"]
    n_chans = int(_scalar(eeg["nbchan"][()]) or 0)
    rate = sfreq or _scalar(eeg["srate"][()])
    trials = _scalar(eeg["trials"][()]) if "trials" in eeg else 1
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
    n_times = _nonzero(path, source.shape[0])
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
    if _attr_str(data, ("MATLAB_class",)) == "char":
        fdt = path.parent / (_matlab_char(data) or [""])[0]
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
        text = _matlab_char(target) if _attr_str(target, ("MATLAB_class",)) == "char" else None
        if text is not None:
            out.append(text[0] if text else "")
        else:
            value = np.asarray(target[()]).ravel()
            out.append(float(value[0]) if value.size == 1 and "MATLAB_empty" not in target.attrs else None)
    return out


# --- MATLAB v5/v7 (scipy) -------------------------------------------------------------------------


def _read_mat_v5(
    path: Path,
    *,
    dataset: str | None = None,
    sfreq: float | None = None,
    ch_names: Sequence[str] | None = None,
    units: str | None = None,
    orientation: str | None = None,
) -> ArrayRecording:
    import scipy.io

    try:
        content = scipy.io.loadmat(path, simplify_cells=True)
    except Exception as exc:
        raise RecordingError(f"{path}: not a readable MATLAB file ({exc})") from exc
    logger.info("%s: MATLAB file older than v7.3, loaded in memory", path)
    flat = dict(_flatten(content))
    arrays = {
        k: v for k, v in flat.items() if isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype.kind in "iuf"
    }
    if dataset is not None and dataset not in arrays:
        raise RecordingError(f"{path}: variable {dataset!r} is not a 2-D numeric array ({', '.join(arrays)})")
    if not arrays:
        raise RecordingError(f"{path}: no 2-D numeric variable in the file")
    name = dataset or max(arrays, key=lambda k: arrays[k].size)
    data = arrays[name]
    found = [list(ch_names)] if ch_names is not None else _mat_names(flat)
    axis, names = _orientation(path, data.shape, orientation, found, explicit=ch_names is not None)
    rates = (_scalar(v) for k, v in flat.items() if k.rsplit("/", 1)[-1].lower() in SFREQ_NAMES)
    rate = sfreq or next((r for r in rates if r), None)
    if rate is None:
        raise RecordingError(
            f"{path}: no sampling rate found in the file (no variable named {', '.join(SFREQ_NAMES)}); "
            "pass sfreq= (command line: --sfreq)"
        )
    return ArrayRecording.wrap(
        data,
        axis,
        _scale(path, units),
        None,
        path=path,
        ch_names=unique_names(names) if names else default_ch_names(data.shape[axis]),
        sfreq=float(rate),
        n_times=_nonzero(path, data.shape[1 - axis]),
    )


def _flatten(content: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in content.items():
        if key.startswith("__"):
            continue
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def _mat_names(flat: dict[str, Any]) -> list[list[str]]:
    out = []
    for key, value in flat.items():
        if key.rsplit("/", 1)[-1].lower() in CH_NAME_NAMES:
            values = value.tolist() if isinstance(value, np.ndarray) else value
            if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
                out.append([v.strip() for v in values])
    return out
