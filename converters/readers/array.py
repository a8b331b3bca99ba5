"""What the array formats (HDF5, MATLAB, EEGLAB v7.3) share: a Recording over an array-like, and how
their sampling rate, channel axis and units are found."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._util import uv_per_unit
from .base import Recording, RecordingError

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


def infer_orientation(
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


def positive_scalar(value: Any) -> float | None:
    """A single finite positive number (a sampling rate, a count), else None."""
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    return float(arr[0]) if arr.size == 1 and np.isfinite(arr[0]) and arr[0] > 0 else None


def uv_scale(path: Path, units: str | None) -> float:
    """Microvolts per unit of the data; microvolts when the file does not say."""
    if units is None:
        logger.info("%s: no units given or found, assuming microvolts", path)
        return 1.0
    factor = uv_per_unit(units)
    if factor is None:
        raise RecordingError(f"{path}: unknown units {units!r} (expected uV, mV, V or nV)")
    return factor


def checked_n_times(path: Path, n_times: int) -> int:
    """``n_times``, refusing an empty recording."""
    if n_times <= 0:
        raise RecordingError(f"{path}: the recording has no samples (zero-length)")
    return int(n_times)
