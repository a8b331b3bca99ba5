"""The window store: one HDF5 file per recording with the preprocessed signal, its window index and provenance.

It is the contract between the two halves of the project: the ML backend reads model input from it by window id
and never relies on what Label Studio displays.

Layout::

    /signal            float32 [n_chans, n_times] microvolts, chunked + compressed
    /windows/id        utf-8 strings, stable across runs (source fingerprint + onset + length)
    /windows/start     int64 start sample of each window (at ``sfreq``)
    /annotations/...   onset_seconds, duration_seconds, description (from the recording or BIDS events.tsv)
    attrs              sfreq, ch_names, channel_scale_uv, window_samples, stride_samples, provenance (JSON)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .readers.base import Annotation

STORE_FORMAT_VERSION = 1
_STR = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class WindowParams:
    """How the preprocessed signal is cut into windows (one Label Studio task each)."""

    window_seconds: float = 2.0
    stride_seconds: float | None = None  # None: same as window_seconds (no overlap)

    def __post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {self.window_seconds}")
        if self.stride_seconds is not None and self.stride_seconds <= 0:
            raise ValueError(f"stride_seconds must be positive, got {self.stride_seconds}")

    def samples(self, sfreq: float) -> tuple[int, int]:
        """(window, stride) in samples at ``sfreq``."""
        window = round(self.window_seconds * sfreq)
        stride = round((self.stride_seconds or self.window_seconds) * sfreq)
        return window, stride


def fingerprint(path: str | os.PathLike, n_blocks: int = 64, block_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's size and 64 evenly spaced 1 MiB blocks (whole file when smaller).

    Identifies a recording for stable window ids and provenance at a cost independent of its size
    (a full hash of a 3-day 32 kHz recording would take minutes). Folders (e.g. EGI .mff) hash every file.
    """
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}:{size}".encode())
        with open(file, "rb") as fh:
            if size <= n_blocks * block_bytes:
                digest.update(fh.read())
                continue
            for offset in np.linspace(0, size - block_bytes, n_blocks).astype(np.int64):
                fh.seek(int(offset))
                digest.update(fh.read(block_bytes))
    return digest.hexdigest()


def window_ids(source_fingerprint: str, starts: np.ndarray, sfreq: float, window_samples: int) -> list[str]:
    """Stable ids ``<fingerprint[:12]>-<onset ms>-<length ms>``: the same file and windowing give the same ids."""
    length_ms = round(1000 * window_samples / sfreq)
    onsets_ms = np.round(1000 * np.asarray(starts) / sfreq).astype(np.int64)
    return [f"{source_fingerprint[:12]}-{onset:09d}-{length_ms}" for onset in onsets_ms]


def window_starts(n_times: int, window_samples: int, stride_samples: int) -> np.ndarray:
    """Start samples of every complete window."""
    if n_times < window_samples:
        return np.zeros(0, np.int64)
    return np.arange(0, n_times - window_samples + 1, stride_samples, dtype=np.int64)


def select_candidates(n_windows: int, max_windows: int | None, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_windows`` windows that cover the recording: one random window per time stratum."""
    if max_windows is None or max_windows >= n_windows:
        return np.arange(n_windows)
    if max_windows <= 0:
        raise ValueError(f"max_windows must be positive, got {max_windows}")
    edges = np.linspace(0, n_windows, max_windows + 1).astype(np.int64)
    rng = np.random.default_rng(seed)
    return np.array([rng.integers(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])], np.int64)


class StoreWriter:
    """Writes a store to ``<path>.tmp`` and renames it into place on :meth:`commit` (never half-written)."""

    def __init__(self, path: str | os.PathLike, n_chans: int, n_times: int, chunk_times: int = 1024):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self.file = h5py.File(self.tmp_path, "w")
        self.signal = self.file.create_dataset(
            "signal",
            shape=(n_chans, n_times),
            dtype=np.float32,
            chunks=(n_chans, min(chunk_times, max(1, n_times))),
            compression="lzf",
            shuffle=True,
        )
        self.n_written = 0

    def append(self, block: np.ndarray) -> None:
        stop = self.n_written + block.shape[1]
        if stop > self.signal.shape[1]:
            raise ValueError(f"{self.path}: block overruns the signal ({stop} > {self.signal.shape[1]} samples)")
        self.signal[:, self.n_written : stop] = block
        self.n_written = stop

    def write_index(self, ids: Sequence[str], starts: np.ndarray) -> None:
        group = self.file.create_group("windows")
        group.create_dataset("id", data=np.array(ids, dtype=object), dtype=_STR)
        group.create_dataset("start", data=np.asarray(starts, np.int64))

    def write_annotations(self, annotations: Sequence[Annotation]) -> None:
        group = self.file.create_group("annotations")
        group.create_dataset("onset_seconds", data=np.array([a.onset_seconds for a in annotations], np.float64))
        group.create_dataset("duration_seconds", data=np.array([a.duration_seconds for a in annotations], np.float64))
        group.create_dataset("description", data=np.array([a.description for a in annotations], object), dtype=_STR)

    def set_attrs(self, **attrs: object) -> None:
        for key, value in attrs.items():
            self.file.attrs[key] = json.dumps(value) if isinstance(value, dict) else value

    def commit(self) -> Path:
        if self.n_written != self.signal.shape[1]:
            raise ValueError(f"{self.path}: wrote {self.n_written} of {self.signal.shape[1]} samples")
        self.file.close()
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.tmp_path.unlink(missing_ok=True)


class WindowStore:
    """Read side of a window store: model input by window id, display data, provenance."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
            attrs = self.file.attrs
            self.sfreq = float(attrs["sfreq"])
            self.ch_names = [str(c) for c in attrs["ch_names"]]
            self.channel_scale_uv = np.asarray(attrs["channel_scale_uv"], np.float32)
            self.window_samples = int(attrs["window_samples"])
            self.provenance = json.loads(attrs["provenance"])
            self.ids = self.file["windows/id"].asstr()[:]
            self.starts = self.file["windows/start"][:]
        except (OSError, KeyError) as err:
            raise ValueError(f"{self.path}: not a window store ({err})") from None
        self._row = {wid: i for i, wid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_chans(self) -> int:
        return len(self.ch_names)

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of ``ids`` in the index; unknown ids raise KeyError naming them."""
        missing = [wid for wid in ids if wid not in self._row]
        if missing:
            raise KeyError(f"{self.path}: unknown window id(s) {', '.join(missing[:5])}")
        return np.array([self._row[wid] for wid in ids], np.int64)

    def read_windows(self, ids: Sequence[str], scaled: bool = True) -> np.ndarray:
        """float32 ``[n_windows, n_chans, window_samples]``: robust-scaled model input, or microvolts."""
        return self.read_rows(self.rows(ids), scaled)

    def read_rows(self, rows: np.ndarray, scaled: bool = True) -> np.ndarray:
        """:meth:`read_windows` of the windows in index rows ``rows`` (see :meth:`rows`)."""
        starts = self.starts[rows]
        out = np.empty((len(starts), self.n_chans, self.window_samples), np.float32)
        signal = self.file["signal"]
        for k, start in enumerate(starts):
            out[k] = signal[:, start : start + self.window_samples]
        if scaled:
            out /= self.channel_scale_uv[None, :, None]
        return out

    def read_span(self, start: int, n_times: int) -> np.ndarray:
        """float32 microvolts ``[n_chans, n_times]`` from sample ``start``; zeros where the recording has no samples."""
        signal = self.file["signal"]
        out = np.zeros((self.n_chans, n_times), np.float32)
        first, stop = max(0, start), min(signal.shape[1], start + n_times)
        if stop > first:
            out[:, first - start : stop - start] = signal[:, first:stop]
        return out

    def iter_batches(self, batch_size: int = 256, scaled: bool = True) -> Iterator[tuple[list[str], np.ndarray]]:
        """All windows in index order, ``batch_size`` at a time, reading contiguous signal once per batch."""
        for first in range(0, len(self), batch_size):
            ids = list(self.ids[first : first + batch_size])
            yield ids, self.read_windows(ids, scaled)

    def annotations(self) -> list[Annotation]:
        group = self.file.get("annotations")
        if group is None:
            return []
        return [
            Annotation(float(o), float(d), str(t))
            for o, d, t in zip(group["onset_seconds"][:], group["duration_seconds"][:], group["description"].asstr()[:])
        ]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> WindowStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
