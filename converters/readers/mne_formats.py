"""Every format MNE-Python reads, behind the :class:`Recording` interface.

* Files are opened with ``preload=False``; samples come from ``raw[picks, start:stop]`` (``get_data`` would
  rebuild the time array of the whole recording on every call) and are scaled from volts to float32
  microvolts (channels in other SI units - MEG, misc - are scaled by the same 1e6).
* Channels typed ``stim`` by MNE (trigger channels, synthesised or recorded) and MEG housekeeping channels
  are left out; every other channel is kept with MNE's type (``eeg``, ``seeg``, ``ecog``, ``dbs``, ``ecg``,
  ``eog``, ``misc``, ``grad``...). For EDF/BDF/GDF, where MNE types every signal ``eeg``, the label prefix
  refines it (``ECG ECG1`` -> ecg, see :func:`converters.readers.edf.channel_type`).
* ``meas_date`` from ``raw.info``; ``bads`` from ``raw.info["bads"]``.
* Annotations are ``raw.annotations`` with onsets made relative to the first sample (``raw.first_time``
  subtracted). All are kept, including MNE's ``BAD_ACQ_SKIP`` markers of acquisition gaps (the gap is
  zero-filled, so a detector should skip it) and EEGLAB ``boundary`` events.
* MNE's warnings are logged (INFO) instead of printed; its exceptions become :class:`RecordingError`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._util import first_line, keep_annotations_inside, mne_warnings_to_log, unique_names
from .base import Annotation, Recording, RecordingError
from .edf import channel_type

logger = logging.getLogger(__name__)

DROPPED_CH_TYPES = frozenset({"stim", "syst", "chpi", "exci", "ias", "dipole", "gof"})
_EDF_FAMILY = (".edf", ".bdf", ".gdf")
_NSX = tuple(f".ns{i}" for i in range(1, 7))
_CURRY = (".cdt", ".dap")
_MAX_BACKTRACK = 8  # samples
_MISSING_MODULE = re.compile(r"the module (\S+) is needed")

# Extensions handled here (lower case); directories: .mff (EGI), .mefd (MEF3), a folder of .ncs (Neuralynx).
MNE_EXTENSIONS = (
    ".edf",
    ".bdf",
    ".gdf",
    ".vhdr",
    ".ahdr",
    ".fif",
    ".fif.gz",
    ".set",
    ".cnt",
    ".mff",
    ".nxe",
    ".eeg",
    ".lay",
    ".nedf",
    ".ncs",
    ".mefd",
    *_NSX,
    *_CURRY,
)


def read_mne(path: Path, ext: str, options: Mapping[str, Any] | None = None) -> MneRecording:
    """Open ``path`` (extension ``ext``, lower case) with the MNE reader for its format."""
    path = Path(path)
    options = dict(options or {})
    with mne_warnings_to_log(path):
        raw = _open_raw(path, ext, options)
    return MneRecording.from_raw(path, raw, edf_family=ext in _EDF_FAMILY)


def _open_raw(path: Path, ext: str, options: dict[str, Any]) -> Any:
    import mne

    if ext == ".cnt":
        return _open_cnt(path, options)
    if ext in _NSX:
        return _call(mne.io.read_raw_nsx, path, options)
    if ext == ".ncs" or (path.is_dir() and any(path.glob("*.ncs"))):
        return _call(mne.io.read_raw_neuralynx, path if path.is_dir() else path.parent, options)
    if ext == ".eeg":
        return _call(mne.io.read_raw_nihon, path, options)
    if ext in _CURRY:
        return _call(mne.io.read_raw_curry, path, options)
    if ext == ".mefd":
        return _call(mne.io.read_raw_mef, path, options)
    return _call(mne.io.read_raw, path, options)


def _call(reader: Callable[..., Any], path: Path, options: dict[str, Any]) -> Any:
    """Run an MNE reader; its exceptions become one-line :class:`RecordingError`."""
    try:
        return reader(path, preload=False, **options)
    except RecordingError:
        raise
    except Exception as exc:
        logger.debug("MNE failed on %s", path, exc_info=True)
        message = first_line(exc)
        missing = _MISSING_MODULE.search(message)
        if missing:
            message = f"needs the optional Python package {missing.group(1)!r}, which is not installed"
        raise RecordingError(f"{path}: MNE cannot read it: {message}") from exc


def _open_cnt(path: Path, options: dict[str, Any]) -> Any:
    """Neuroscan CNT (with ``data_format='int16'`` when MNE cannot guess it) or ANT Neuro CNT (RIFF)."""
    import mne

    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic in (b"RIFF", b"RF64"):
        return _call(mne.io.read_raw_ant, path, options)
    if "data_format" in options:
        return _call(mne.io.read_raw_cnt, path, options)
    try:
        return _call(mne.io.read_raw_cnt, path, {**options, "data_format": "auto"})
    except RecordingError as exc:
        logger.info("%s: %s; retrying with data_format='int16'", path.name, exc)
        return _call(mne.io.read_raw_cnt, path, {**options, "data_format": "int16"})


class MneRecording(Recording):
    """A lazily read ``mne.io.BaseRaw``."""

    _raw: Any
    _keep: np.ndarray  # indices into raw.ch_names

    @classmethod
    def from_raw(cls, path: Path, raw: Any, *, edf_family: bool = False) -> MneRecording:
        """Wrap an MNE Raw: keep the non-stim channels, convert annotations."""
        types = raw.get_channel_types()
        keep = [i for i, t in enumerate(types) if t not in DROPPED_CH_TYPES]
        if not keep:
            raise RecordingError(f"{path}: no data channels (only {', '.join(sorted(set(types)))})")
        if raw.n_times <= 0:
            raise RecordingError(f"{path}: the recording has no samples (zero-length)")
        names = [raw.ch_names[i] for i in keep]
        ch_types = [types[i] for i in keep]
        if edf_family:
            ch_types = [channel_type(n) if t == "eeg" else t for n, t in zip(names, ch_types, strict=True)]
        sfreq = float(raw.info["sfreq"])
        rec = cls(
            path=path,
            ch_names=unique_names(names),
            sfreq=sfreq,
            n_times=int(raw.n_times),
            ch_types=ch_types,
            meas_date=raw.info["meas_date"],
            annotations=keep_annotations_inside(path, _annotations(raw), raw.n_times / sfreq),
            bads=[b for b in raw.info["bads"] if b in names],
        )
        rec._raw, rec._keep = raw, np.asarray(keep)
        return rec

    def _read(self, start: int, stop: int, picks: list[int]) -> np.ndarray:
        if self._raw is None:
            raise RecordingError(f"{self.path}: the recording is closed")
        if start == stop or not picks:
            return np.zeros((len(picks), stop - start), dtype=np.float32)
        # some MNE readers need sorted, unique channel indices: read those, then reorder
        wanted, order = np.unique(self._keep[picks], return_inverse=True)
        data = self._read_window(start, stop, wanted)
        data *= 1e6
        return data[order].astype(np.float32)

    def _read_window(self, start: int, stop: int, wanted: np.ndarray) -> np.ndarray:
        """``raw[wanted, start:stop]`` in volts, working around MNE readers (NEDF, multi-block NSx) that
        fail for some start samples: on failure, start a few samples earlier and crop."""
        error: Exception | None = None
        for back in range(min(start, _MAX_BACKTRACK) + 1):
            try:
                with mne_warnings_to_log(self.path):
                    data, _ = self._raw[wanted, start - back : stop]
            except Exception as exc:
                error = error or exc
                continue
            if data.shape[1] == stop - start + back:
                return data[:, back:]
        detail = first_line(error) if error else "MNE returned the wrong number of samples"
        raise RecordingError(f"{self.path}: cannot read samples {start}:{stop}: {detail}") from error

    def close(self) -> None:
        """Forget the Raw (MNE opens the file on each read; nothing stays open)."""
        self._raw = None


def _annotations(raw: Any) -> list[Annotation]:
    ann = raw.annotations
    first = float(raw.first_time)
    return [
        Annotation(float(onset) - first, float(duration), str(description))
        for onset, duration, description in zip(ann.onset, ann.duration, ann.description, strict=True)
    ]
