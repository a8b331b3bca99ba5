"""BIDS iEEG/EEG recordings: ``sub-<label>[_ses-<label>]_task-<label>[_run-<n>]_(ieeg|eeg).<ext>``.

The data file is read by the reader for its format; then the sidecars are applied (found next to the data
file or, by the BIDS inheritance principle, in a parent folder with a subset of its entities):

* ``*_channels.tsv``: channel types from the ``type`` column (SEEG -> seeg, ECOG -> ecog, EEG -> eeg,
  DBS -> dbs, EOG/HEOG/VEOG -> eog, ECG -> ecg, EMG -> emg, TRIG -> stim, others -> misc), channels with
  ``status`` = bad go to ``bads``. Channels are matched by name; the channel list itself is not changed.
* ``*_events.tsv``: rows (``onset``, ``duration``, ``trial_type`` - else ``value`` - as description)
  become the annotations. When the file exists it REPLACES the annotations embedded in the data file
  (BIDS converters copy those into events.tsv, so keeping both would duplicate them).
* ``*_ieeg.json`` / ``*_eeg.json``: ``PowerLineFrequency`` -> ``Recording.line_freq_hz``.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

from ._util import keep_annotations_inside
from .base import Annotation, Recording

logger = logging.getLogger(__name__)

ENTITY_NAMES = {
    "sub": "subject",
    "ses": "session",
    "task": "task",
    "acq": "acquisition",
    "run": "run",
    "proc": "processing",
    "space": "space",
    "rec": "reconstruction",
    "split": "split",
    "desc": "description",
}
BIDS_TYPES = {
    "EEG": "eeg",
    "SEEG": "seeg",
    "ECOG": "ecog",
    "DBS": "dbs",
    "EOG": "eog",
    "HEOG": "eog",
    "VEOG": "eog",
    "ECG": "ecg",
    "EKG": "ecg",
    "EMG": "emg",
    "TRIG": "stim",
    "RESP": "resp",
    "TEMP": "temperature",
    "GSR": "gsr",
}
_DATA_NAME = re.compile(r"^sub-[^_/]+(_[a-zA-Z]+-[^_/]+)*_(ieeg|eeg)\.")


def bids_entities(path: str | Path) -> dict[str, str]:
    """BIDS entities of a file name, with long keys: subject, session, task, acquisition, run, ...

    ``suffix`` holds the last part without a dash (``ieeg``, ``eeg``). Unknown entities keep their short
    key. Names that are not BIDS give ``{}`` or the entities they happen to contain.
    """
    entities: dict[str, str] = {}
    stem = Path(path).name.split(".", 1)[0]
    for part in stem.split("_"):
        key, sep, value = part.partition("-")
        if sep and key and value:
            entities[ENTITY_NAMES.get(key, key)] = value
        elif part and entities:
            entities["suffix"] = part
    return entities


def is_bids_data_file(path: Path) -> bool:
    """Whether the file name is a BIDS ``_ieeg``/``_eeg`` data file name."""
    return bool(_DATA_NAME.match(Path(path).name))


def apply_sidecars(rec: Recording) -> Recording:
    """Apply channels.tsv, events.tsv and the _ieeg.json/_eeg.json next to ``rec.path`` (in place)."""
    suffix = bids_entities(rec.path).get("suffix", "ieeg")
    channels = find_sidecar(rec.path, "channels", ".tsv")
    if channels:
        _apply_channels(rec, read_tsv(channels))
    events = find_sidecar(rec.path, "events", ".tsv")
    if events:
        new = _events(read_tsv(events))
        logger.info(
            "%s: %d annotation(s) from %s replace the %d embedded in the file",
            rec.path.name,
            len(new),
            events.name,
            len(rec.annotations),
        )
        rec.annotations = keep_annotations_inside(rec.path, new, rec.duration_seconds)
    sidecar = find_sidecar(rec.path, suffix, ".json")
    if sidecar:
        _apply_json(rec, sidecar)
    return rec


def find_sidecar(data_path: Path, suffix: str, ext: str) -> Path | None:
    """The closest, most specific ``*_<suffix><ext>`` whose entities are a subset of the data file's."""
    wanted = _short_entities(data_path.name)
    folder = data_path.parent
    while True:
        best = None
        for candidate in sorted(folder.glob(f"*_{suffix}{ext}")):
            ents = _short_entities(candidate.name)
            applies = all(wanted.get(k) == v for k, v in ents.items())
            if applies and (best is None or len(ents) > len(_short_entities(best.name))):
                best = candidate
        if best is not None:
            return best
        if not (folder.name.startswith(("sub-", "ses-")) or folder.name in ("ieeg", "eeg")):
            return None  # searched up to the dataset root (the folder holding sub-*)
        folder = folder.parent


def _short_entities(name: str) -> dict[str, str]:
    stem = name.split(".", 1)[0]
    out = {}
    for part in stem.split("_"):
        key, sep, value = part.partition("-")
        if sep and key and value:
            out[key] = value
    return out


def read_tsv(path: Path) -> list[dict[str, str | None]]:
    """Rows of a BIDS TSV file; ``n/a`` and empty cells become None."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [{k.strip(): _cell(v) for k, v in row.items() if k} for row in rows]


def _cell(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value in ("", "n/a") else value


def _apply_channels(rec: Recording, rows: list[dict[str, str | None]]) -> None:
    by_name = {name: row for row in rows if (name := row.get("name"))}
    by_lower = {name.lower(): row for name, row in by_name.items()}
    unmatched = []
    bads = list(rec.bads)
    for i, name in enumerate(rec.ch_names):
        row = by_name.get(name) or by_lower.get(name.lower())
        if row is None:
            unmatched.append(name)
            continue
        if kind := row.get("type"):
            rec.ch_types[i] = BIDS_TYPES.get(kind.upper(), "misc")
        if (row.get("status") or "").lower() == "bad" and name not in bads:
            bads.append(name)
    rec.bads = bads
    if unmatched:
        logger.warning("%s: %d channel(s) not in channels.tsv: %s", rec.path.name, len(unmatched), ", ".join(unmatched))


def _events(rows: list[dict[str, str | None]]) -> list[Annotation]:
    out = []
    for row in rows:
        onset = _float(row.get("onset"))
        if onset is None:
            continue
        description = row.get("trial_type") or row.get("value") or "event"
        out.append(Annotation(onset, _float(row.get("duration")) or 0.0, description))
    return out


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _apply_json(rec: Recording, path: Path) -> None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("%s: cannot read %s: %s", rec.path.name, path.name, exc)
        return
    line = _float(meta.get("PowerLineFrequency"))
    if line:
        rec.line_freq_hz = line
    sfreq = _float(meta.get("SamplingFrequency"))
    if sfreq and abs(sfreq - rec.sfreq) > 1e-3 * rec.sfreq:
        logger.warning("%s: %s says %g Hz, the file %g Hz", rec.path.name, path.name, sfreq, rec.sfreq)
