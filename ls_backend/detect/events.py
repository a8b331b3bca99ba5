"""Spike events: one per spike, from per-sample, per-channel probabilities (see :class:`Event`).

An event is a run of samples where the maximum over channels of the probability reaches the threshold:

* runs separated by at most ``merge_gap_seconds`` (50 ms) below the threshold merge (one polyspike, not three;
  the rule of :func:`ls_backend.model.regions.extract_regions`), runs shorter than ``min_duration_seconds`` (20 ms)
  are dropped;
* a run longer than ``max_duration_seconds`` (1 s: a burst, or an artifact the model takes for spikes) is cut every
  ``max_duration_seconds`` from its onset, each piece one event; a piece starts at its first sample above the
  threshold, and the last piece takes the rest (it is dropped only when shorter than the minimum). Cutting from the
  onset needs no knowledge of where the run ends, so a stream of blocks can close each piece as soon as it is
  complete and carry at most ``max + min + gap`` samples.

Per event: the channels whose probability reaches the threshold during it (with their highest probability, highest
first), the peak channel (the highest), and the peak time: the sharpest deflection of the peak channel's signal
(:func:`sharpness`: the largest curvature at a spike's scale, +-20 ms) within the event, or within the 200 ms
before its onset where that is sharper; the onset moves back to the peak when the peak comes first. The
probability is smeared over the network's receptive field, so its maximum can lie tens of milliseconds from the
spike; and where spikes come with a slow wave, a model trained on regions spanning the whole complex fires mostly
on the wave, after the spike, and the wave is the largest deflection. Measured on synthetic patient C
(spike-wave) with the model after 100 labels: the largest deflection inside the event was a median 150 ms from
the true peak.

:class:`EventExtractor` takes the probability in consecutive :class:`Block` s (as
:func:`ls_backend.detect.scoring.stream_probability` yields them) and gives exactly the events of
:func:`extract_events` on the whole recording, whatever the block boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ls_backend.model.regions import runs_above

MERGE_GAP_SECONDS = 0.05
MIN_DURATION_SECONDS = 0.02
MAX_DURATION_SECONDS = 1.0
LOOKBACK_SECONDS = 0.2  # before an event's onset, where its spike may lie (spike-wave: the model fires on the wave)
SHARPNESS_SECONDS = 0.02  # the scale of a spike's apex: curvature over +-20 ms


@dataclass(frozen=True)
class Event:
    """One detected spike. Times in seconds from the start of its recording.

    ``channels``: every involved channel with its highest probability during the event, highest first (the peak
    channel first); ``probability``: the event's highest probability; ``reviewed``: "" (the model's),
    "confirmed" (in a window a clinician labeled as a spike)."""

    onset: float
    duration: float
    peak: float
    peak_channel: str
    probability: float
    channels: dict[str, float] = field(default_factory=dict)
    reviewed: str = ""
    model_version: str = ""


@dataclass(frozen=True)
class Block:
    """Consecutive samples of a recording from ``start_sample``: probability ``proba`` ``[n_chans, n]`` (NaN for an
    absent channel) and the model input ``signal`` ``[n_chans, n]`` it was computed from."""

    start_sample: int
    proba: np.ndarray
    signal: np.ndarray

    def __post_init__(self) -> None:
        if self.proba.ndim != 2 or self.signal.shape != self.proba.shape:
            raise ValueError(
                f"block at sample {self.start_sample}: expected proba and signal of one shape [n_chans, n], got "
                f"{self.proba.shape} and {self.signal.shape}"
            )

    def __len__(self) -> int:
        return self.proba.shape[1]

    def after(self, offset: int) -> Block:
        """The samples from ``offset`` on (a copy: a carried tail does not keep its whole block alive)."""
        return Block(self.start_sample + offset, self.proba[:, offset:].copy(), self.signal[:, offset:].copy())


def channel_maxima(proba: np.ndarray) -> np.ndarray:
    """Maximum over the last axis, -inf for NaN (absent) values."""
    return np.where(np.isnan(proba), -np.inf, proba).max(axis=-1)


class EventExtractor:
    """Events from blocks of probability fed in order (see the module docstring for the rules).

    ``feed`` returns the events completed so far, ``finish`` the rest; together they give the events of
    :func:`extract_events` on the concatenated blocks. Tuning: ``merge_gap_seconds``, ``min_duration_seconds``,
    ``max_duration_seconds``."""

    def __init__(
        self,
        sfreq: float,
        ch_names: Sequence[str],
        threshold: float,
        version: str = "",
        merge_gap_seconds: float = MERGE_GAP_SECONDS,
        min_duration_seconds: float = MIN_DURATION_SECONDS,
        max_duration_seconds: float = MAX_DURATION_SECONDS,
    ):
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if sfreq <= 0:
            raise ValueError(f"sfreq must be positive, got {sfreq}")
        if merge_gap_seconds < 0 or min_duration_seconds < 0:
            raise ValueError(
                f"merge_gap_seconds and min_duration_seconds must be >= 0, got {merge_gap_seconds} and "
                f"{min_duration_seconds}"
            )
        if max_duration_seconds < min_duration_seconds:
            raise ValueError(
                f"max_duration_seconds ({max_duration_seconds}) must be at least min_duration_seconds "
                f"({min_duration_seconds})"
            )
        self.sfreq = float(sfreq)
        self.ch_names = list(ch_names)
        self.threshold = threshold
        self.version = version
        self.gap_samples = round(merge_gap_seconds * sfreq)
        self.min_samples = max(1, round(min_duration_seconds * sfreq))
        self.max_samples = max(self.min_samples, round(max_duration_seconds * sfreq))
        self.lookback_samples = round(LOOKBACK_SECONDS * sfreq)
        self.sharpness_samples = max(1, round(SHARPNESS_SECONDS * sfreq))
        self._carry: Block | None = None  # the samples of the event still open
        self._before: np.ndarray = np.zeros((len(self.ch_names), 0), np.float32)  # signal just before the block
        self._pending: Event | None = None  # the last event, until the next one cannot overlap it
        self._next_sample = 0

    def feed(self, block: Block) -> list[Event]:
        """The events that ``block`` completes; the one still open at its end is carried to the next block."""
        if block.proba.shape[0] != len(self.ch_names):
            raise ValueError(
                f"block at sample {block.start_sample}: {block.proba.shape[0]} channels, expected "
                f"{len(self.ch_names)} ({', '.join(self.ch_names[:5])}...)"
            )
        if block.start_sample != self._next_sample:
            raise ValueError(
                f"blocks must arrive in order: expected sample {self._next_sample}, got {block.start_sample}"
            )
        self._next_sample = block.start_sample + len(block)
        carry = self._carry
        if carry is not None:
            block = Block(
                carry.start_sample,
                np.concatenate([carry.proba, block.proba], axis=1),
                np.concatenate([carry.signal, block.signal], axis=1),
            )
        events, open_from = self._events(block, final=False)
        self._carry = block.after(open_from) if open_from < len(block) else None
        lead = np.concatenate([self._before, block.signal[:, :open_from]], axis=1)
        self._before = lead[:, max(0, lead.shape[1] - self.lookback_samples) :].copy()
        return self._fold(events)

    def finish(self) -> list[Event]:
        """The event still open at the end of the recording (if any); the extractor is then ready for another."""
        carry, self._carry, self._next_sample = self._carry, None, 0
        events = self._fold([] if carry is None else self._events(carry, final=True)[0])
        if self._pending is not None:
            events.append(self._pending)
        self._before, self._pending = self._before[:, :0], None
        return events

    def _fold(self, events: list[Event]) -> list[Event]:
        """``events`` with each one that overlaps the one before it (its onset moved back to its spike, into the
        previous event: the fragments of one spike-wave complex) merged into it; the last one is held back."""
        done = []
        for event in events:
            if self._pending is not None and event.onset < self._pending.onset + self._pending.duration:
                self._pending = merge_events(self._pending, event)
                continue
            if self._pending is not None:
                done.append(self._pending)
            self._pending = event
        return done

    def _events(self, block: Block, final: bool) -> tuple[list[Event], int]:
        """The complete events of ``block`` and where the open one starts (``len(block)`` when none is open)."""
        envelope = channel_maxima(block.proba.T)
        runs = runs_above(envelope, self.threshold)
        events: list[Event] = []
        i = 0
        while i < len(runs):
            start, stop = runs[i]
            i += 1
            while i < len(runs) and runs[i][0] - stop <= self.gap_samples:
                stop = runs[i][1]
                i += 1
            while stop - start >= self.max_samples + self.min_samples:  # the rest is a piece of its own
                cut = start + self.max_samples
                events.append(self._event(block, start, cut))
                start = cut + int(np.argmax(envelope[cut:stop] >= self.threshold))  # exists: envelope[stop - 1]
            if not final and len(block) - stop <= self.gap_samples:  # a run in the next block may still merge
                return events, int(start)
            if stop - start >= self.min_samples:
                events.append(self._event(block, start, stop))
        return events, len(block)

    def _event(self, block: Block, start: int, stop: int) -> Event:
        maxima = channel_maxima(block.proba[:, start:stop])
        involved = np.flatnonzero(maxima >= self.threshold)
        involved = involved[np.argsort(-maxima[involved], kind="stable")]
        peak_channel = int(involved[0])
        peak = self._peak(block, peak_channel, start, stop)
        onset = min(start, peak)
        return Event(
            onset=float(block.start_sample + onset) / self.sfreq,
            duration=float(stop - onset) / self.sfreq,
            peak=float(block.start_sample + peak) / self.sfreq,
            peak_channel=self.ch_names[peak_channel],
            probability=float(maxima[peak_channel]),
            channels={self.ch_names[c]: float(maxima[c]) for c in involved},
            model_version=self.version,
        )

    def _peak(self, block: Block, channel: int, start: int, stop: int) -> int:
        """The spike's apex on ``channel`` (a sample of ``block``, negative within the lookback before it): the
        sharpest deflection of the event, or of the ``lookback_samples`` before its onset where that is sharper."""
        before = self._before[channel]
        first = start - self.lookback_samples
        if first < 0:
            lead = before[max(0, len(before) + first) :]
            x = np.concatenate([lead, block.signal[channel, :stop]])
            first = -len(lead)
        else:
            x = block.signal[channel, first:stop]
        curvature = sharpness(x, self.sharpness_samples)
        onset = start - first
        inside = onset + int(np.argmax(curvature[onset:]))
        earlier = int(np.argmax(curvature[:onset])) if onset else inside
        return first + (earlier if curvature[earlier] > curvature[inside] else inside)


def merge_events(first: Event, second: Event) -> Event:
    """One event spanning both: the peak of the more probable, every channel with its highest probability."""
    main = second if second.probability > first.probability else first
    channels = dict(first.channels)
    for name, value in second.channels.items():
        channels[name] = max(value, channels.get(name, 0.0))
    end = max(first.onset + first.duration, second.onset + second.duration)
    return replace(
        main,
        onset=first.onset,
        duration=end - first.onset,
        channels=dict(sorted(channels.items(), key=lambda item: -item[1])),
    )


def sharpness(x: np.ndarray, half_width: int) -> np.ndarray:
    """How far each sample of ``x`` lies from the mean of its neighbours ``half_width`` samples away on each side:
    largest at a spike's apex. A slow wave of larger amplitude (spike-wave), or a smooth rise, curves less at that
    scale."""
    x = np.nan_to_num(np.asarray(x, np.float64))
    padded = np.pad(x, half_width, mode="edge")
    return np.abs(x - (padded[: len(x)] + padded[2 * half_width :]) / 2)


def extract_events(
    proba: np.ndarray,
    signal: np.ndarray,
    sfreq: float,
    ch_names: Sequence[str],
    threshold: float,
    version: str = "",
    **tuning: float,
) -> list[Event]:
    """The events of a whole recording: probability ``proba`` and model input ``signal``, both ``[n_chans, n]``
    (see :class:`EventExtractor` for ``tuning``)."""
    extractor = EventExtractor(sfreq, ch_names, threshold, version, **tuning)
    block = Block(0, np.asarray(proba), np.asarray(signal))
    return extractor.feed(block) + extractor.finish()
