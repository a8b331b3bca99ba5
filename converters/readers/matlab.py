"""MATLAB ``.mat`` files older than v7.3, read with :func:`scipy.io.loadmat` (whole file in memory).

The same search rules as for HDF5 (:mod:`.hdf5`): the largest 2-D numeric variable (or ``dataset=``), a
sampling-rate variable, channel names; v7.3 files are HDF5 and go to :mod:`.hdf5`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._util import default_ch_names, unique_names
from .array import (
    CH_NAME_NAMES,
    SFREQ_NAMES,
    ArrayRecording,
    checked_n_times,
    infer_orientation,
    positive_scalar,
    uv_scale,
)
from .base import RecordingError

logger = logging.getLogger(__name__)


def read_mat(
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
    arrays = {k: v for k, v in flat.items() if isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype.kind in "iuf"}
    if dataset is not None and dataset not in arrays:
        raise RecordingError(f"{path}: variable {dataset!r} is not a 2-D numeric array ({', '.join(arrays)})")
    if not arrays:
        raise RecordingError(f"{path}: no 2-D numeric variable in the file")
    name = dataset or max(arrays, key=lambda k: arrays[k].size)
    data = arrays[name]
    found = [list(ch_names)] if ch_names is not None else _mat_names(flat)
    axis, names = infer_orientation(path, data.shape, orientation, found, explicit=ch_names is not None)
    rates = (positive_scalar(v) for k, v in flat.items() if k.rsplit("/", 1)[-1].lower() in SFREQ_NAMES)
    rate = sfreq or next((r for r in rates if r), None)
    if rate is None:
        raise RecordingError(
            f"{path}: no sampling rate found in the file (no variable named {', '.join(SFREQ_NAMES)}); "
            "pass sfreq= (command line: --sfreq)"
        )
    return ArrayRecording.wrap(
        data,
        axis,
        uv_scale(path, units),
        None,
        path=path,
        ch_names=unique_names(names) if names else default_ch_names(data.shape[axis]),
        sfreq=float(rate),
        n_times=checked_n_times(path, data.shape[1 - axis]),
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
