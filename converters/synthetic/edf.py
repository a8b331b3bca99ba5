"""EDF/EDF+C and BDF/BDF+C writing, record by record, in bounded memory.

The generator streams hours of signal through :class:`EdfWriter`; tests write small files with
:func:`write_edf_array`. All data signals share one sampling rate. An EDF+/BDF+ file gets an annotation
signal whose record ``r`` holds the time-keeping TAL of the record and the annotations that start in it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import numpy as np

logger = logging.getLogger(__name__)

EdfAnnotation = tuple[float, float, str]  # (onset seconds from the first sample, duration seconds, text)

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_TAL_RESERVED = ("\x00", "\x14", "\x15")


@dataclass(frozen=True)
class EdfSpec:
    """What the header says. Physical values are in ``dimension`` units, digital ones use the full range."""

    labels: tuple[str, ...]
    sfreq: float
    physical_range: tuple[float, float]
    dimension: str = "uV"
    transducer: str = ""
    record_seconds: float = 1.0
    bdf: bool = False
    start: datetime = datetime(2000, 1, 1)
    start_offset_seconds: float = 0.0  # sub-second start (EDF+/BDF+ only: the first record's TAL)
    patient: str = "X X X X"
    recording: str = "X X X"  # what follows "Startdate dd-MMM-yyyy"

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        if not self.labels:
            raise ValueError("EDF: at least one signal label is needed")
        spr = self.sfreq * self.record_seconds
        if spr <= 0 or abs(spr - round(spr)) > 1e-9 * spr:
            raise ValueError(
                f"EDF: sfreq {self.sfreq:g} Hz x record_seconds {self.record_seconds:g} must be a positive "
                "integer number of samples"
            )
        low, high = self.physical_range
        if not low < high:
            raise ValueError(f"EDF: physical_range must be (min, max) with min < max, got {self.physical_range}")
        if not 0 <= self.start_offset_seconds < 1:
            raise ValueError(f"EDF: start_offset_seconds must be in [0, 1), got {self.start_offset_seconds}")

    @property
    def samples_per_record(self) -> int:
        return round(self.sfreq * self.record_seconds)

    @property
    def digital_range(self) -> tuple[int, int]:
        return (-(2**23), 2**23 - 1) if self.bdf else (-32768, 32767)

    @property
    def sample_bytes(self) -> int:
        return 3 if self.bdf else 2


class EdfWriter:
    """Writes the header, then whole records from float chunks ``[n_chans, k * samples_per_record]``.

    ``annotations=None`` writes plain EDF/BDF (unless a start offset needs EDF+); a list, even empty,
    writes EDF+C/BDF+C. Samples outside the physical range are clipped and counted in ``clipped``.
    """

    def __init__(
        self, path: str | Path, spec: EdfSpec, n_records: int, annotations: Sequence[EdfAnnotation] | None = None
    ) -> None:
        if n_records < 0:
            raise ValueError(f"{path}: n_records must be >= 0, got {n_records}")
        self.path, self.spec, self.n_records = Path(path), spec, n_records
        plus = annotations is not None or spec.start_offset_seconds > 0
        self._tals = _tal_records(spec, n_records, annotations or ()) if plus else []
        self._annot_samples = max(1, -(-max(map(len, self._tals)) // spec.sample_bytes)) if self._tals else 0
        low, high = (float(_edf_number(v)) for v in spec.physical_range)  # as the header says them
        dmin, dmax = spec.digital_range
        self._gain = (dmax - dmin) / (high - low)
        self._offset = dmin - low * self._gain
        self.clipped = 0
        self._written = 0
        header = _header(spec, n_records, self._annot_samples)  # bad fields fail before the file exists
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("wb")
        self._file.write(header)

    def write(self, chunk: np.ndarray) -> None:
        """Append ``chunk`` (physical values) as whole records."""
        spec = self.spec
        n_chans, spr = len(spec.labels), spec.samples_per_record
        if chunk.ndim != 2 or chunk.shape[0] != n_chans or chunk.shape[1] % spr:
            raise ValueError(
                f"{self.path}: a chunk must be [{n_chans}, a multiple of {spr}] samples, got {list(chunk.shape)}"
            )
        n_rec = chunk.shape[1] // spr
        if self._written + n_rec > self.n_records:
            raise ValueError(f"{self.path}: more than the {self.n_records} records the header announces")
        data_bytes = n_chans * spr * spec.sample_bytes
        buf = np.zeros((n_rec, data_bytes + self._annot_samples * spec.sample_bytes), np.uint8)
        if spec.bdf:
            digital = np.empty((n_rec, n_chans, spr), "<i4")
            self._quantise(chunk, digital)
            buf[:, :data_bytes] = digital.view(np.uint8).reshape(n_rec, -1, 4)[:, :, :3].reshape(n_rec, -1)
        else:
            self._quantise(chunk, buf[:, :data_bytes].view("<i2").reshape(n_rec, n_chans, spr))
        for i, tal in enumerate(self._tals[self._written : self._written + n_rec]):
            buf[i, data_bytes : data_bytes + len(tal)] = np.frombuffer(tal, np.uint8)
        buf.tofile(self._file)
        self._written += n_rec

    def _quantise(self, chunk: np.ndarray, out: np.ndarray) -> None:
        """Scale, clip and round ``chunk`` [n_chans, n_rec*spr] into ``out`` [n_rec, n_chans, spr]."""
        n_rec, _, spr = out.shape
        dmin, dmax = self.spec.digital_range
        tmp = np.empty(chunk.shape[1], np.float64 if self.spec.bdf else np.float32)  # 24 bits need float64
        for c, row in enumerate(chunk):
            np.multiply(row, self._gain, out=tmp)
            if self._offset:
                tmp += self._offset
            self.clipped += int(np.count_nonzero((tmp < dmin) | (tmp > dmax)))
            np.clip(tmp, dmin, dmax, out=tmp)
            np.rint(tmp.reshape(n_rec, spr), out=out[:, c, :], casting="unsafe")

    def close(self) -> None:
        """Close the file; it must hold the records the header announces."""
        if self._file.closed:
            return
        self._file.close()
        if self._written != self.n_records:
            raise ValueError(f"{self.path}: {self._written} records written, the header announces {self.n_records}")

    def __enter__(self) -> EdfWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()


def write_edf_array(
    path: str | Path, data: np.ndarray, spec: EdfSpec, annotations: Sequence[EdfAnnotation] | None = None
) -> Path:
    """Write ``data`` [n_chans, n_times] (physical values, whole records) to one EDF/BDF file."""
    spr = spec.samples_per_record
    if data.ndim != 2 or data.shape[1] % spr:
        raise ValueError(f"{path}: data must be [n_chans, a multiple of {spr}] samples, got {list(data.shape)}")
    with EdfWriter(path, spec, data.shape[1] // spr, annotations) as writer:
        writer.write(data)
    if writer.clipped:
        logger.warning("%s: %d samples clipped to %s %s", path, writer.clipped, spec.physical_range, spec.dimension)
    return Path(path)


def _tal_records(spec: EdfSpec, n_records: int, annotations: Sequence[EdfAnnotation]) -> list[bytes]:
    """The annotation signal of each record: its time-keeping TAL, then the annotations starting in it."""
    offset = spec.start_offset_seconds
    per_record = [f"{_tal_time(r * spec.record_seconds + offset)}\x14\x14\x00".encode() for r in range(n_records)]
    for onset, duration, text in annotations:
        if any(c in text for c in _TAL_RESERVED):
            raise ValueError(f"EDF annotation {text!r}: the characters \\x00, \\x14 and \\x15 are reserved")
        if not per_record:
            raise ValueError(f"EDF annotation {text!r} at {onset} s: the file has no record to hold it")
        r = min(max(math.floor(onset / spec.record_seconds), 0), n_records - 1)
        dur = f"\x15{_tal_time(duration)[1:]}" if duration > 0 else ""
        per_record[r] += f"{_tal_time(onset + offset)}{dur}\x14{text}\x14\x00".encode()
    return per_record


def _tal_time(seconds: float) -> str:
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return text if text.startswith("-") else "+" + text


def _header(spec: EdfSpec, n_records: int, annot_samples: int) -> bytes:
    plus = annot_samples > 0
    n_data = len(spec.labels)
    signals = n_data + plus
    dmin, dmax = spec.digital_range
    low, high = spec.physical_range
    start = spec.start
    version = b"\xffBIOSEMI" if spec.bdf else _field("0", 8)
    reserved = ("BDF+C" if spec.bdf else "EDF+C") if plus else ("24BIT" if spec.bdf else "")
    head = b"".join(
        [
            version,
            _field(spec.patient, 80),
            _field(f"Startdate {start.day:02d}-{_MONTHS[start.month - 1]}-{start.year} {spec.recording}", 80),
            _field(start.strftime("%d.%m.%y"), 8),
            _field(start.strftime("%H.%M.%S"), 8),
            _field(256 * (signals + 1), 8),
            _field(reserved, 44),
            _field(n_records, 8),
            _field(_edf_number(spec.record_seconds), 8),
            _field(signals, 4),
        ]
    )
    annot = ["BDF Annotations" if spec.bdf else "EDF Annotations"] * plus
    columns: list[tuple[Sequence[object], int]] = [
        ([*spec.labels, *annot], 16),
        ([spec.transducer] * n_data + [""] * plus, 80),
        ([spec.dimension] * n_data + [""] * plus, 8),
        ([_edf_number(low)] * n_data + ["-1"] * plus, 8),
        ([_edf_number(high)] * n_data + ["1"] * plus, 8),
        ([dmin] * signals, 8),
        ([dmax] * signals, 8),
        ([""] * signals, 80),
        ([spec.samples_per_record] * n_data + [annot_samples] * plus, 8),
        ([""] * signals, 32),
    ]
    for values, width in columns:
        head += b"".join(_field(v, width) for v in values)
    return head


def _field(value: object, width: int) -> bytes:
    text = str(value)
    raw = text.encode("ascii", errors="replace")
    if len(raw) > width:
        raise ValueError(f"EDF header field {text!r} is longer than {width} characters")
    return raw.ljust(width, b" ")


def _edf_number(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if len(text) <= 8 else f"{value:.8g}"[:8]
