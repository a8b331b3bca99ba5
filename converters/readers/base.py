"""The one recording type every reader returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np


class RecordingError(ValueError):
    """A recording cannot be read; the message names the file and the reason."""


@dataclass(frozen=True)
class Annotation:
    """An event stored with the recording (EDF+ TAL, BrainVision marker, BIDS events.tsv row)."""

    onset_seconds: float
    duration_seconds: float
    description: str


@dataclass
class Recording(ABC):
    """A multichannel recording opened lazily: metadata now, samples on demand.

    Subclasses implement :meth:`_read`; :meth:`read` validates the request.
    Samples are returned as float32 microvolts, shape ``[n_picks, stop - start]``.
    """

    path: Path
    ch_names: list[str]
    sfreq: float
    n_times: int
    ch_types: list[str] = field(default_factory=list)
    meas_date: datetime | None = None
    annotations: list[Annotation] = field(default_factory=list)
    bads: list[str] = field(default_factory=list)
    line_freq_hz: float | None = None  # mains frequency when the file says (BIDS PowerLineFrequency)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.ch_types:
            self.ch_types = ["eeg"] * len(self.ch_names)
        if len(self.ch_types) != len(self.ch_names):
            raise RecordingError(f"{self.path}: {len(self.ch_types)} channel types for {len(self.ch_names)} channels")
        if self.sfreq <= 0:
            raise RecordingError(f"{self.path}: sampling rate must be positive, got {self.sfreq}")

    @property
    def n_chans(self) -> int:
        return len(self.ch_names)

    @property
    def duration_seconds(self) -> float:
        return self.n_times / self.sfreq

    def read(self, start: int, stop: int, picks: Sequence[int] | None = None) -> np.ndarray:
        """Samples ``start:stop`` of channels ``picks`` (all when None) as float32 microvolts."""
        if not 0 <= start <= stop <= self.n_times:
            raise RecordingError(f"{self.path}: cannot read samples {start}:{stop}, the recording has {self.n_times}")
        picks = list(range(self.n_chans)) if picks is None else list(picks)
        data = self._read(start, stop, picks)
        return np.asarray(data, dtype=np.float32).reshape(len(picks), stop - start)

    @abstractmethod
    def _read(self, start: int, stop: int, picks: list[int]) -> np.ndarray: ...

    #: whether ``read`` may be called from several threads at once (else callers serialise reads)
    thread_safe: bool = field(default=False, init=False, repr=False)

    def prefetch(self, start: int, stop: int) -> None:  # noqa: B027 - optional hook
        """Hint that samples ``start:stop`` will be read soon (readers on plain files start the disk early)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles (readers that keep one open override this)."""

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
