"""The one entry point for every recording format: :func:`read_recording` returns a lazy :class:`Recording`.

Dispatch on the extension (case-insensitive):

* ``.edf``/``.bdf``: the fast record-aligned reader (:mod:`.edf`); EDF+D and odd headers go to MNE;
* ``.h5``/``.hdf5`` and MATLAB v7.3 ``.mat``: :mod:`.hdf5`; older ``.mat``: :mod:`.matlab`;
* EEGLAB ``.set`` saved as MATLAB v7.3 (or any HDF5 file holding an EEGLAB structure): :mod:`.eeglab`;
* every other format MNE reads (:data:`.mne_formats.MNE_EXTENSIONS`): :mod:`.mne_formats`;
* a BIDS data file (``sub-*_ieeg.<ext>``/``sub-*_eeg.<ext>``): the reader for ``<ext>``, then its BIDS
  sidecars (:mod:`.bids`);
* a directory: EGI ``.mff``, MEF3 ``.mefd`` and a folder of Neuralynx ``.ncs`` files are one recording;
  another folder (BIDS or plain) must hold exactly one recording (see :func:`find_recordings`).

Companion files are read through their header: ``.eeg`` next to a ``.vhdr``/``.ahdr`` (BrainVision),
``.vmrk``, ``.fdt`` (EEGLAB), ``.dat`` next to a ``.lay`` (Persyst) or ``.dap`` (Curry).

Every failure (missing, empty, truncated or corrupt file, unsupported extension, format MNE cannot read,
missing optional package) raises :class:`RecordingError` with a one-line message naming the file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ._util import first_line, keep_annotations_inside
from .base import Recording, RecordingError
from .bids import apply_sidecars, is_bids_data_file
from .mne_formats import MNE_EXTENSIONS

logger = logging.getLogger(__name__)

_HDF5_EXTENSIONS = (".h5", ".hdf5", ".mat")
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(sorted(set(MNE_EXTENSIONS) | set(_HDF5_EXTENSIONS)))
_DIRECTORY_FORMATS = (".mff", ".mefd")
_COMPANIONS = {
    ".eeg": (".vhdr", ".ahdr"),
    ".vmrk": (".vhdr",),
    ".amrk": (".ahdr",),
    ".fdt": (".set",),
    ".dat": (".lay", ".dap"),
}
_DATA_FILE = re.compile(r"^\s*DataFile\s*=\s*(.+?)\s*$", re.MULTILINE)


def read_recording(
    path: str | Path,
    *,
    dataset: str | None = None,
    sfreq: float | None = None,
    ch_names: Sequence[str] | None = None,
    units: str | None = None,
    orientation: Literal["channels_first", "times_first"] | None = None,
    allow_truncated: bool = False,
    engine: Literal["auto", "mne"] = "auto",
    mne_options: Mapping[str, Any] | None = None,
) -> Recording:
    """Open a recording lazily, whatever its format.

    ``dataset``, ``sfreq``, ``ch_names``, ``units`` (uV, mV, V, nV) and ``orientation`` describe HDF5 and
    MATLAB files (ignored, with a log line, for formats that carry their own metadata).
    ``allow_truncated`` reads the complete records of a truncated EDF/BDF instead of raising.
    ``engine="mne"`` reads EDF/BDF with MNE instead of the fast reader. ``mne_options`` are passed to the
    MNE reader function (e.g. ``{"data_format": "int32"}`` for a Neuroscan CNT file).
    """
    path = Path(path)
    if engine not in ("auto", "mne"):
        raise RecordingError(f"{path}: engine must be 'auto' or 'mne', got {engine!r}")
    options = {
        "dataset": dataset,
        "sfreq": sfreq,
        "ch_names": ch_names,
        "units": units,
        "orientation": orientation,
    }
    try:
        rec = _read(path, options, allow_truncated, engine, mne_options)
    except RecordingError:
        raise
    except Exception as exc:  # a reader bug or a corrupt file we did not foresee: still one clear line
        logger.debug("reading %s failed", path, exc_info=True)
        raise RecordingError(f"{path}: cannot read it ({type(exc).__name__}: {first_line(exc)})") from exc
    rec.annotations = keep_annotations_inside(rec.path, rec.annotations, rec.duration_seconds)
    return rec


def _read(
    path: Path,
    options: dict[str, Any],
    allow_truncated: bool,
    engine: str,
    mne_options: Mapping[str, Any] | None,
) -> Recording:
    if not path.exists():
        raise RecordingError(f"{path}: no such file or directory")
    if path.is_dir() and not _is_directory_recording(path):
        found = find_recordings(path)
        if len(found) != 1:
            what = "no supported recording" if not found else f"{len(found)} recordings (first: {found[0]})"
            raise RecordingError(f"{path}: the folder holds {what}; pass one recording (see find_recordings)")
        path = found[0]
    ext = extension(path)
    header = _companion_header(path, ext)
    if header is not None:
        logger.info("%s: reading it through its header %s", path, header.name)
        path, ext = header, extension(header)
    if ext not in SUPPORTED_EXTENSIONS and not _is_directory_recording(path):
        raise RecordingError(
            f"{path}: unsupported file extension {ext or '(none)'!r} (supported: {', '.join(SUPPORTED_EXTENSIONS)})"
        )
    if path.is_file() and path.stat().st_size == 0:
        raise RecordingError(f"{path}: the file is empty")
    rec = _read_file(path, ext, options, allow_truncated, engine, mne_options)
    if is_bids_data_file(path):
        apply_sidecars(rec)
    return rec


def _read_file(
    path: Path,
    ext: str,
    options: dict[str, Any],
    allow_truncated: bool,
    engine: str,
    mne_options: Mapping[str, Any] | None,
) -> Recording:
    import h5py

    from . import edf, eeglab, hdf5, matlab, mne_formats

    if ext in _HDF5_EXTENSIONS or (ext == ".set" and h5py.is_hdf5(path)):
        if ext == ".mat" and not h5py.is_hdf5(path):
            return matlab.read_mat(path, **options)
        if options["dataset"] is None and eeglab.is_eeglab(path):
            _log_ignored(path, options, kept=("sfreq", "ch_names"))
            return eeglab.read_eeglab(path, sfreq=options["sfreq"], ch_names=options["ch_names"])
        return hdf5.read_hdf5(path, **options)
    _log_ignored(path, options, kept=())
    if ext in (".edf", ".bdf") and engine == "auto":
        try:
            return edf.read_edf(path, allow_truncated=allow_truncated)
        except edf.EdfFallback as exc:
            logger.info("%s: %s; reading it with MNE", path, exc)
    return mne_formats.read_mne(path, ext, mne_options)


def _log_ignored(path: Path, options: dict[str, Any], kept: tuple[str, ...]) -> None:
    given = [k for k, v in options.items() if v is not None and k not in kept]
    if given:
        logger.info("%s: %s apply to HDF5/MATLAB files only; ignored", path, ", ".join(given))


def extension(path: Path) -> str:
    """Lower-case extension, ``.fif.gz`` included."""
    name = Path(path).name.lower()
    if name.endswith(".fif.gz"):
        return ".fif.gz"
    return Path(name).suffix


def find_recordings(path: str | os.PathLike) -> list[Path]:
    """The recordings in ``path``: itself for a file, the ``_ieeg``/``_eeg`` data files of a BIDS
    dataset (under ``sub-*``), or every supported file of a plain folder (recursive; companion files such
    as BrainVision ``.eeg`` left out; ``.mff``/``.mefd``/Neuralynx folders count as one recording)."""
    path = Path(path)
    if not path.exists():
        raise RecordingError(f"{path}: no such file or directory")
    if path.is_file():
        if extension(path) not in SUPPORTED_EXTENSIONS:
            raise RecordingError(f"{path}: unsupported file extension {extension(path) or '(none)'!r}")
        return [path]
    if _is_directory_recording(path):
        return [path]
    if _is_bids_folder(path):
        return _bids_recordings(path)
    return _plain_recordings(path)


def _is_directory_recording(path: Path) -> bool:
    if not path.is_dir():
        return False
    return extension(path) in _DIRECTORY_FORMATS or any(p.suffix.lower() == ".ncs" for p in path.iterdir())


def _is_bids_folder(path: Path) -> bool:
    if (path / "dataset_description.json").is_file() or path.name.startswith(("sub-", "ses-")):
        return True
    return any(p.is_dir() for p in path.glob("sub-*"))


def _bids_recordings(root: Path) -> list[Path]:
    subjects = [root] if root.name.startswith(("sub-", "ses-")) else sorted(root.glob("sub-*"))
    found = []
    for subject in subjects:
        for candidate in sorted(subject.rglob("*_*eeg.*")):
            if is_bids_data_file(candidate) and _is_recording(candidate):
                found.append(candidate)
    return found


def _plain_recordings(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in list(dirs):
            if _is_directory_recording(here / d):
                found.append(here / d)
                dirs.remove(d)
        found.extend(here / f for f in sorted(files) if not f.startswith(".") and _is_recording(here / f))
    return sorted(found)


def _is_recording(path: Path) -> bool:
    ext = extension(path)
    if ext not in SUPPORTED_EXTENSIONS or ext == ".ncs":
        return False
    if path.is_dir():
        return ext in _DIRECTORY_FORMATS
    return _companion_header(path, ext) is None


def _companion_header(path: Path, ext: str) -> Path | None:
    """The header file a companion data/marker file belongs to, if it is there."""
    if path.is_dir():
        return None
    for header_ext in _COMPANIONS.get(ext, ()):
        for candidate in (path.with_suffix(header_ext), path.with_suffix(header_ext.upper())):
            if candidate.is_file():
                return candidate
    if ext == ".eeg":  # a BrainVision header may name a data file with another stem
        for header in sorted(path.parent.iterdir()):
            if header.suffix.lower() in (".vhdr", ".ahdr") and _names_data_file(header, path.name):
                return header
    return None


def _names_data_file(header: Path, name: str) -> bool:
    try:
        text = header.read_text(encoding="latin-1")
    except OSError:
        return False
    return any(match.strip() == name for match in _DATA_FILE.findall(text))
