"""Helpers shared by the readers (units, channel names, annotations, MNE warnings, direct reads)."""

from __future__ import annotations

import io
import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np

from .base import Annotation

logger = logging.getLogger(__name__)

# Microvolts per unit, keyed by the lower-cased unit string.
_UV_PER_UNIT = {
    "uv": 1.0,
    "\u00b5v": 1.0,  # micro sign
    "\u03bcv": 1.0,  # greek mu
    "microvolt": 1.0,
    "microvolts": 1.0,
    "mv": 1e3,
    "millivolt": 1e3,
    "millivolts": 1e3,
    "v": 1e6,
    "volt": 1e6,
    "volts": 1e6,
    "nv": 1e-3,
    "nanovolt": 1e-3,
    "nanovolts": 1e-3,
}


def uv_per_unit(unit: str | bytes | None) -> float | None:
    """Microvolts per ``unit`` ('uV', 'µV', 'mV', 'V', 'nV', ...), None when it is not a voltage."""
    if unit is None:
        return None
    if isinstance(unit, bytes):
        unit = _decode_unit(unit)
    return _UV_PER_UNIT.get(unit.strip().lower())


def _decode_unit(raw: bytes) -> str:
    raw = raw.strip()
    if raw in (b"\x83\xcaV", b"\xb5V"):  # Shift-JIS and Latin-1 micro signs written by some vendors
        return "uV"
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def default_ch_names(n: int) -> list[str]:
    """``ch01``, ``ch02``, ... (zero-padded so they sort)."""
    width = max(2, len(str(n)))
    return [f"ch{i + 1:0{width}d}" for i in range(n)]


def unique_names(names: Iterable[str]) -> list[str]:
    """Make channel names non-empty and unique the way MNE does (``name-0``, ``name-1``, ...)."""
    names = [name.strip() or f"ch{i + 1}" for i, name in enumerate(names)]
    counts = Counter(names)
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        if counts[name] > 1:
            new = f"{name}-{seen[name]}"
            seen[name] += 1
            while new in counts:
                new = f"{name}-{seen[name]}"
                seen[name] += 1
            out.append(new)
        else:
            out.append(name)
    return out


def keep_annotations_inside(path: Path, annotations: Iterable[Annotation], duration: float) -> list[Annotation]:
    """Annotations with a finite onset in ``[0, duration]``, sorted by onset; the others are logged."""
    kept, dropped = [], 0
    tolerance = 1e-6 * max(1.0, duration)
    for ann in annotations:
        onset = ann.onset_seconds
        if math.isfinite(onset) and -tolerance <= onset <= duration + tolerance:
            onset = min(max(onset, 0.0), duration)
            dur = ann.duration_seconds if math.isfinite(ann.duration_seconds) else 0.0
            kept.append(Annotation(onset, max(dur, 0.0), ann.description))
        else:
            dropped += 1
    if dropped:
        logger.info("%s: ignored %d annotation(s) outside the recording (0-%.3f s)", path, dropped, duration)
    kept.sort(key=lambda a: a.onset_seconds)
    return kept


@contextmanager
def mne_warnings_to_log(path: Path) -> Iterator[None]:
    """Turn what MNE warns, logs or prints while reading ``path`` into INFO log records (no console noise)."""
    import mne

    printed = io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        mne.utils.use_log_level("warning"),
        redirect_stdout(printed),
    ):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            messages = [str(item.message) for item in caught] + printed.getvalue().splitlines()
            for message in messages:
                if message.strip():
                    logger.info("%s: MNE: %s", path.name, message.strip().replace("\n", " "))


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception message, prefixed by its type when it has none."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


ALIGN = 4096  # O_DIRECT: buffer address, file offset and length in multiples of the logical block size


def open_direct(path: Path) -> int | None:
    """A read-only descriptor with ``O_DIRECT`` (no page cache), or None where the file system refuses it."""
    if not hasattr(os, "O_DIRECT"):
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:  # e.g. tmpfs, some network file systems
        return None


def aligned_bytes(n: int) -> np.ndarray:
    """``n`` bytes (rounded up to ``ALIGN``) at an aligned address, for direct reads."""
    n = -(-n // ALIGN) * ALIGN
    raw = np.empty(n + ALIGN, np.uint8)
    skip = -raw.ctypes.data % ALIGN
    return raw[skip : skip + n]


def pread_all(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset`` (fewer bytes only at the end of the file); the number of bytes read."""
    done = 0
    while done < len(view):
        n_read = os.preadv(fd, [view[done:]], offset + done)
        if n_read == 0:
            break
        done += n_read
    return done
