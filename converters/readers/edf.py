"""Fast reader for continuous EDF, EDF+C and BDF/BDF+C files.

The header is parsed here and whole data records are read with ``pread`` into a reused buffer, so reading a
chunk costs O(chunk) whatever the length of the recording, and the process's memory does not grow as the file
is read (a memory map would add every page read to its RSS). MNE's EDF reader is several times slower.
Files of ``DIRECT_READ_BYTES`` or more are read with ``O_DIRECT`` where the file system allows it: a multi-hour
file is read once, and going through the page cache cost almost a whole core at 500 MB/s on a 2-core machine.

What it returns:

* data channels: every signal except "EDF/BDF Annotations" signals, trigger channels named ``Status`` or
  ``Trigger`` (as MNE, which types them ``stim``) and signals whose samples-per-record differs from the
  most common one (logged as a warning: this reader does not resample);
* samples as float32 microvolts from each signal's physical/digital min/max and physical dimension
  (uV, µV, mV, V, nV). Signals with another dimension (``%``, ``bpm``, ...) are typed ``misc`` and scaled
  like MNE (physical value x 1e6); signals without a dimension are assumed to be in volts, as MNE does;
* channel types from the label prefix (``EEG Fp1`` -> eeg, ``ECG`` -> ecg, ``SEEG``, ``ECOG``, ``EOG``,
  ``EMG``, ``RESP``...), ``eeg`` otherwise;
* EDF+ annotations (TAL) from all annotation signals, decoded as UTF-8 (Latin-1 if that fails), with
  onsets relative to the first sample (the sub-second start in the first record's time-keeping TAL is
  subtracted, and added to ``meas_date``). Overlapping annotations are kept as they are.

A file shorter than its header announces raises :class:`RecordingError` naming the expected and the
actual size, unless ``allow_truncated=True`` (then only the complete records are read, with a warning).
EDF+D/BDF+D (discontinuous) files and headers this parser does not understand raise :class:`EdfFallback`:
the caller reads those with MNE.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from ._util import ALIGN, aligned_bytes, keep_annotations_inside, open_direct, pread_all, unique_names, uv_per_unit
from .base import Annotation, Recording, RecordingError

logger = logging.getLogger(__name__)

_MAIN_HEADER = 256
_SIGNAL_FIELDS = (  # name, width in bytes, per signal
    ("label", 16),
    ("transducer", 80),
    ("dimension", 8),
    ("physical_min", 8),
    ("physical_max", 8),
    ("digital_min", 8),
    ("digital_max", 8),
    ("prefilter", 80),
    ("n_samples", 8),
    ("reserved", 32),
)
_ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
_STIM_LABELS = ("status", "trigger")
_TYPE_PREFIXES = {
    "EEG": "eeg",
    "SEEG": "seeg",
    "ECOG": "ecog",
    "DBS": "dbs",
    "ECG": "ecg",
    "EKG": "ecg",
    "EOG": "eog",
    "EMG": "emg",
    "RESP": "resp",
    "TEMP": "temperature",
    "MISC": "misc",
    "SAO2": "misc",
    "SPO2": "misc",
}
_TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?(\x14.*?)\x14\x00", re.DOTALL)
_EDF_PLUS_STARTDATE = re.compile(r"Startdate (\d{2})-([A-Z]{3})-(\d{4})")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


class EdfFallback(Exception):
    """The file is valid but not for this reader (EDF+D, odd header): read it with MNE instead."""


@dataclass
class EdfSignal:
    """One signal of the EDF header."""

    label: str
    dimension: bytes
    physical_min: float
    physical_max: float
    digital_min: float
    digital_max: float
    n_samples: int

    @property
    def is_annotation(self) -> bool:
        return self.label in _ANNOTATION_LABELS


@dataclass
class EdfHeader:
    """The parts of an EDF/BDF header this reader uses."""

    is_bdf: bool
    variant: str  # "", "C" or "D" (EDF+/BDF+ continuous or discontinuous)
    start: datetime | None
    header_bytes: int
    n_records: int
    record_duration: float
    signals: list[EdfSignal]
    recording_id: str

    @property
    def bytes_per_sample(self) -> int:
        return 3 if self.is_bdf else 2

    @property
    def record_samples(self) -> int:
        return sum(s.n_samples for s in self.signals)

    @property
    def record_bytes(self) -> int:
        return self.record_samples * self.bytes_per_sample


def read_edf(path: Path, *, allow_truncated: bool = False) -> EdfRecording:
    """Open a continuous EDF/EDF+C/BDF file lazily (raises :class:`EdfFallback` for EDF+D and odd files)."""
    path = Path(path)
    header = parse_header(path)
    if header.variant == "D":
        raise EdfFallback("discontinuous EDF+D/BDF+D file")
    n_records = _check_size(path, header, allow_truncated)
    return EdfRecording.open(path, header, n_records)


def parse_header(path: Path) -> EdfHeader:
    """Parse the 256-byte main header and the 256-byte-per-signal headers."""
    with open(path, "rb") as fh:
        main = fh.read(_MAIN_HEADER)
        if len(main) < _MAIN_HEADER:
            raise RecordingError(f"{path}: too short for an EDF/BDF header ({len(main)} bytes)")
        is_bdf = main[:8] == b"\xffBIOSEMI"
        if not is_bdf and main[:8].strip() != b"0":
            raise EdfFallback(f"unknown EDF version field {main[:8]!r}")
        n_signals = _int(main[252:256], "number of signals")
        if n_signals <= 0:
            raise RecordingError(f"{path}: the header lists no signals")
        raw_signals = fh.read(_MAIN_HEADER * n_signals)
    if len(raw_signals) < _MAIN_HEADER * n_signals:
        raise RecordingError(f"{path}: truncated header ({n_signals} signals announced)")
    reserved = main[192:236]
    variant = reserved[4:5].decode("ascii") if reserved[:4] in (b"EDF+", b"BDF+") else ""
    header = EdfHeader(
        is_bdf=is_bdf,
        variant=variant,
        start=_start_datetime(main),
        header_bytes=_int(main[184:192], "header size"),
        n_records=_int(main[236:244], "number of records"),
        record_duration=_float(main[244:252], "record duration"),
        signals=_parse_signals(raw_signals, n_signals),
        recording_id=main[88:168].decode("latin-1").strip(),
    )
    if header.header_bytes != _MAIN_HEADER * (n_signals + 1):
        raise EdfFallback(f"header size field {header.header_bytes} does not match {n_signals} signals")
    return header


def _parse_signals(raw: bytes, n: int) -> list[EdfSignal]:
    fields: dict[str, list[bytes]] = {}
    offset = 0
    for name, width in _SIGNAL_FIELDS:
        fields[name] = [raw[offset + i * width : offset + (i + 1) * width] for i in range(n)]
        offset += width * n
    return [
        EdfSignal(
            label=fields["label"][i].decode("latin-1").strip(),
            dimension=fields["dimension"][i].strip(),
            physical_min=_float(fields["physical_min"][i], "physical minimum"),
            physical_max=_float(fields["physical_max"][i], "physical maximum"),
            digital_min=_float(fields["digital_min"][i], "digital minimum"),
            digital_max=_float(fields["digital_max"][i], "digital maximum"),
            n_samples=_int(fields["n_samples"][i], "samples per record"),
        )
        for i in range(n)
    ]


def _int(raw: bytes, what: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise EdfFallback(f"unreadable {what} field {raw!r}") from None


def _float(raw: bytes, what: str) -> float:
    try:
        return float(raw.strip().replace(b",", b"."))
    except ValueError:
        raise EdfFallback(f"unreadable {what} field {raw!r}") from None


def _start_datetime(main: bytes) -> datetime | None:
    """Header start date and time (EDF+ 'Startdate dd-MMM-yyyy' gives the 4-digit year)."""
    try:
        day, month, year = (int(x) for x in main[168:176].decode("ascii").split("."))
        hour, minute, second = (int(x) for x in main[176:184].decode("ascii").split("."))
        year += 1900 if year >= 85 else 2000
        match = _EDF_PLUS_STARTDATE.search(main[88:168].decode("latin-1"))
        if match and match.group(2) in _MONTHS:
            day, month, year = int(match.group(1)), _MONTHS.index(match.group(2)) + 1, int(match.group(3))
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except (ValueError, UnicodeDecodeError):
        return None


def _check_size(path: Path, header: EdfHeader, allow_truncated: bool) -> int:
    """Number of complete data records to read; raise on a truncated or empty file."""
    if header.record_bytes <= 0:
        raise RecordingError(f"{path}: the header announces 0 samples per data record")
    file_size = path.stat().st_size
    available = max(file_size - header.header_bytes, 0) // header.record_bytes
    n_records = header.n_records
    if n_records == -1:  # allowed while recording: the file size tells
        logger.info("%s: number of records unknown in the header, %d found in the file", path, available)
        n_records = available
    if n_records <= 0:
        raise RecordingError(f"{path}: the file contains no data records (zero-length recording)")
    expected = header.header_bytes + n_records * header.record_bytes
    if file_size < expected:
        message = (
            f"{path}: file is truncated: the header announces {n_records} data records "
            f"({expected} bytes) but the file has {file_size} bytes"
        )
        if not allow_truncated or available == 0:
            raise RecordingError(message)
        logger.warning("%s; reading the %d complete records only", message, available)
        n_records = available
    elif file_size > expected:
        logger.info("%s: %d bytes after the last data record ignored", path, file_size - expected)
    return n_records


def channel_type(label: str) -> str:
    """Channel type from an EDF label prefix (``EEG Fp1-Ref`` -> eeg, ``ECG`` -> ecg), eeg otherwise."""
    words = label.replace("-", " ").split()
    return _TYPE_PREFIXES.get(words[0].upper(), "eeg") if words else "eeg"


def _data_signal_indices(path: Path, signals: list[EdfSignal]) -> list[int]:
    """Signals to expose: not annotations, not triggers, and at the most common samples-per-record."""
    candidates = [i for i, s in enumerate(signals) if not s.is_annotation and s.label.lower() not in _STIM_LABELS]
    if not candidates:
        raise RecordingError(f"{path}: no signal channels (only annotations or triggers)")
    counts = Counter(signals[i].n_samples for i in candidates)
    rate = max(counts, key=lambda n: (counts[n], n))
    other = [i for i in candidates if signals[i].n_samples != rate]
    if other:
        logger.warning(
            "%s: %d signal(s) at another sampling rate left out (this reader does not resample): %s",
            path,
            len(other),
            ", ".join(f"{signals[i].label} ({signals[i].n_samples}/record)" for i in other),
        )
    if rate <= 0:
        raise RecordingError(f"{path}: the signals have 0 samples per data record")
    return [i for i in candidates if signals[i].n_samples == rate]


def _scaling(path: Path, signals: list[EdfSignal]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-signal gain and offset from digital values to microvolts, and the channel types."""
    gains, offsets, types, no_unit = [], [], [], []
    for s in signals:
        factor = uv_per_unit(s.dimension)
        ch_type = channel_type(s.label)
        if factor is None:
            if s.dimension:
                ch_type = "misc"
            else:
                no_unit.append(s.label)
            factor = 1e6  # as MNE: physical value taken as SI, then x 1e6
        span = s.digital_max - s.digital_min
        gain = (s.physical_max - s.physical_min) / span if span else 1.0
        offset = s.physical_min - s.digital_min * gain
        gains.append(gain * factor)
        offsets.append(offset * factor if abs(offset) > 1e-6 * abs(gain) else 0.0)  # drop rounding noise
        types.append(ch_type)
    if no_unit:
        logger.warning("%s: no physical dimension for %s; assuming volts (as MNE)", path, ", ".join(no_unit))
    return np.array(gains), np.array(offsets), types


DIRECT_READ_BYTES = 1 << 30  # files this large bypass the page cache


class EdfRecording(Recording):
    """A continuous EDF/BDF file read record-aligned with ``pread`` into a reused buffer (one per thread).

    Not a memory map: mapped pages of a multi-hour file would count in the process's RSS as it is read.
    """

    _fd: int | None
    _direct_fd: int | None  # O_DIRECT descriptor of a large file (None: read through the page cache)
    _dtype: np.dtype
    _local: threading.local  # one reusable buffer per thread: reads may run concurrently
    _width: int
    _header: EdfHeader
    _spr: int
    _offsets: np.ndarray  # first sample of each channel inside a record
    _gain: np.ndarray
    _offset: np.ndarray

    @classmethod
    def open(cls, path: Path, header: EdfHeader, n_records: int) -> EdfRecording:
        """Map the data records and collect metadata and annotations."""
        signals = header.signals
        picks = _data_signal_indices(path, signals)
        spr = signals[picks[0]].n_samples
        if header.record_duration <= 0:
            raise EdfFallback(f"record duration {header.record_duration} s")
        starts = np.concatenate([[0], np.cumsum([s.n_samples for s in signals])])
        width = header.record_samples if not header.is_bdf else header.record_bytes
        dtype = np.dtype("<i2") if not header.is_bdf else np.dtype(np.uint8)
        gain, offset, types = _scaling(path, [signals[i] for i in picks])
        sfreq = spr / header.record_duration
        n_times = n_records * spr
        tal = _annotation_bytes(path, header, starts, n_records)
        first_offset, annotations = parse_tal(tal)
        meas_date = header.start + timedelta(seconds=first_offset) if header.start else None
        rec = cls(
            path=path,
            ch_names=unique_names(signals[i].label for i in picks),
            sfreq=sfreq,
            n_times=n_times,
            ch_types=types,
            meas_date=meas_date,
            annotations=keep_annotations_inside(path, annotations, n_times / sfreq),
        )
        rec._fd, rec._header, rec._spr, rec._width = os.open(path, os.O_RDONLY), header, spr, width
        rec._direct_fd = open_direct(path) if path.stat().st_size >= DIRECT_READ_BYTES else None
        rec._dtype, rec._local = dtype, threading.local()
        rec.thread_safe = True
        rec._offsets = starts[picks].astype(np.int64)
        rec._gain, rec._offset = gain.astype(np.float32), offset.astype(np.float32)
        return rec

    def _read(self, start: int, stop: int, picks: list[int]) -> np.ndarray:
        n = self._spr
        first, last = start // n, -(-stop // n)
        block = self._records(first, last)
        out = np.empty((len(picks), last - first, n), dtype=np.float32)
        for row, pick in enumerate(picks):
            samples = self._samples(block, int(self._offsets[pick]))
            np.multiply(samples, self._gain[pick], out=out[row], casting="unsafe")
            if self._offset[pick]:  # usually 0 (symmetric ranges): skip a pass over the data
                out[row] += self._offset[pick]
        flat = out.reshape(len(picks), -1)
        return flat[:, start - first * n : stop - first * n]

    def _samples(self, block: np.ndarray, first_sample: int) -> np.ndarray:
        """Digital values of one channel in ``block`` as [records, samples per record]."""
        n = self._spr
        if not self._header.is_bdf:
            return block[:, first_sample : first_sample + n]
        raw = block[:, 3 * first_sample : 3 * (first_sample + n)].reshape(len(block), n, 3)
        wide = np.zeros((len(block), n, 4), dtype=np.uint8)
        wide[:, :, 1:] = raw  # bytes into the top 3 bytes of a little-endian int32
        return wide.view("<i4")[:, :, 0] >> 8  # arithmetic shift sign-extends the 24-bit value

    def _records(self, first: int, last: int) -> np.ndarray:
        """Data records ``first:last`` as ``[records, width]``, valid until the next call."""
        if self._fd is None:
            raise RecordingError(f"{self.path}: the recording is closed")
        record_bytes, offset = self._record_offset(first)
        count = (last - first) * record_bytes
        if self._direct_fd is not None:  # whole aligned blocks around the records
            skip = offset % ALIGN
            view = self._buffer(skip + count)
            done = pread_all(self._direct_fd, view.data, offset - skip) - skip
            data = view[skip : skip + count]
        else:
            data = self._buffer(count)[:count]
            done = pread_all(self._fd, data.data, offset)
        if done < count:
            raise RecordingError(f"{self.path}: file ended inside data record {first + max(done, 0) // record_bytes}")
        return data.view(self._dtype).reshape(last - first, self._width)

    def _record_offset(self, record: int) -> tuple[int, int]:
        """Bytes per data record, and the file offset of data record ``record``."""
        record_bytes = self._width * self._dtype.itemsize
        return record_bytes, self._header.header_bytes + record * record_bytes

    def _buffer(self, n_bytes: int) -> np.ndarray:
        """This thread's reusable, aligned read buffer of at least ``n_bytes``."""
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or buffer.size < n_bytes:
            buffer = self._local.buffer = aligned_bytes(n_bytes)
        return buffer[: -(-n_bytes // ALIGN) * ALIGN]

    def prefetch(self, start: int, stop: int) -> None:
        if self._fd is None or self._direct_fd is not None or stop <= start:
            return
        n = self._spr
        first, last = start // n, -(-stop // n)
        record_bytes, offset = self._record_offset(first)
        os.posix_fadvise(self._fd, offset, (last - first) * record_bytes, os.POSIX_FADV_WILLNEED)

    def close(self) -> None:
        for fd in (self._fd, self._direct_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._direct_fd = None


def _annotation_bytes(path: Path, header: EdfHeader, starts: np.ndarray, n_records: int) -> list[bytes]:
    """Raw TAL bytes of every annotation signal, record after record (channel after channel).

    Read with one small ``pread`` per record: a memory map would pull most of the file into this process's RSS.
    """
    bps = header.bytes_per_sample
    spans = [(int(starts[i]) * bps, s.n_samples * bps) for i, s in enumerate(header.signals) if s.is_annotation]
    if not spans:
        return []
    out = [bytearray() for _ in spans]
    fd = os.open(path, os.O_RDONLY)
    try:
        for record in range(n_records):
            base = header.header_bytes + record * header.record_bytes
            for buf, (offset, size) in zip(out, spans):
                buf += os.pread(fd, size, base + offset)
    finally:
        os.close(fd)
    return [bytes(b) for b in out]


def parse_tal(channels: list[bytes]) -> tuple[float, list[Annotation]]:
    """Parse EDF+ time-stamped annotation lists.

    Returns the sub-second start of the first record (its time-keeping TAL) and the annotations, with
    onsets relative to the first sample.
    """
    first_offset = 0.0
    if channels:
        match = _TAL.match(channels[0].lstrip(b"\x00"))
        if match and match.group(3).split(b"\x14")[1:2] == [b""]:
            first_offset = float(match.group(1))
    annotations = []
    for raw in channels:
        for onset, duration, texts in _TAL.findall(raw):
            for text in texts.split(b"\x14")[1:]:
                if text:
                    annotations.append(
                        Annotation(
                            onset_seconds=float(onset) - first_offset,
                            duration_seconds=float(duration) if duration else 0.0,
                            description=_decode(text),
                        )
                    )
    return first_offset, annotations


def _decode(text: bytes) -> str:
    try:
        return text.decode("utf-8").strip()
    except UnicodeDecodeError:
        return text.decode("latin-1").strip()
