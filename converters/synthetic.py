"""Realistic synthetic sEEG for tests and benchmarks: spikes, background, artifacts, line noise.

A :class:`PatientProfile` describes one synthetic patient (electrode shafts, spike morphology,
amplitude, rate and spread, 1/f background with an optional rhythm, spike-like artifacts, line
noise). :func:`make_events` draws the events of a recording (a Poisson process, deterministic
given the seed) and :func:`iter_chunks` renders the signal chunk by chunk in bounded memory:

* the background (1/f noise, rhythm, line noise) is made at a low rate (sfreq / k, about 2 kHz)
  by IIR filters whose state is carried from block to block, then upsampled to the output rate
  by cubic interpolation; white amplifier noise is added at the output rate;
* events (spikes and artifacts) are rendered as waveforms on the absolute sample grid and added
  where they overlap the chunk.

Every random draw is keyed by the seed and an absolute block or event index, so the samples do
not depend on the chunk size (up to float rounding). Writers stream chunks to EDF+, HDF5 and a
BIDS iEEG layout. Run ``python -m converters.synthetic --help`` for the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import functools
import json
import logging
import math
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from scipy import signal

logger = logging.getLogger(__name__)

SPIKE_KINDS = ("spike", "sharp_wave", "spike_wave", "polyspike")
ARTIFACT_KINDS = ("artifact_pop", "artifact_muscle")
EVENT_KINDS = SPIKE_KINDS + ARTIFACT_KINDS

LOW_RATE_TARGET_HZ = 2048.0  # the background is generated at sfreq / k, k = round(sfreq / this)
MAX_CONTACTS_PER_SHAFT = 18
DEFAULT_START = datetime(2024, 1, 1, 8, 0, 0)

_LOW_BLOCK = 4096  # low-rate samples per noise block
_WHITE_BLOCK = 32768  # output samples per white-noise block
_WHITE_TABLE = 1 << 20  # white noise is read from a table at random offsets (fast, still white)
_WARMUP_SECONDS = 10.0  # filters run this long before t=0 so the recording starts in steady state
# random streams: numpy SeedSequence entropy is [seed, stream, index...]
_S_LAYOUT, _S_LOW, _S_WARMUP, _S_WHITE_TABLE, _S_WHITE = 1, 2, 3, 4, 5
_S_EVENTS = {kind: 100 + i for i, kind in enumerate(EVENT_KINDS)}


# --------------------------------------------------------------------------------------------
# profiles


@dataclass(frozen=True)
class SpikeSpread:
    """Where spikes appear: focus contact, neighbours involved, decay and delays."""

    focus_shaft: str
    focus_contact: int = 3  # 1-based contact number on the focus shaft
    n_adjacent: int = 2  # contacts involved on each side of the focus
    decay_per_contact: float = 0.6  # amplitude ratio per contact away from the focus
    delay_seconds_per_contact: float = 0.002
    phase_reversal: bool = False  # deeper contacts see the opposite polarity (dipole-like field)
    secondary_shaft: str | None = None  # a propagation site on another shaft
    secondary_contact: int = 3
    secondary_gain: float = 0.4
    secondary_delay_seconds: float = 0.02


@dataclass(frozen=True)
class Background:
    """Ongoing activity: 1/f^exponent noise, an optional rhythm, and white amplifier noise."""

    amplitude_uv: float = 30.0  # RMS of the 1/f component
    exponent: float = 2.0  # power spectrum ~ 1 / f^exponent (above ~0.5 Hz)
    rhythm_hz: float | None = None  # e.g. 10.0 for alpha
    rhythm_uv: float = 0.0  # RMS of the rhythm on the channels that show it most
    rhythm_bandwidth_hz: float = 2.0
    white_noise_uv: float = 1.5  # RMS of the amplifier noise added at the output rate
    shaft_correlation: float = 0.7  # correlation of neighbouring contacts on a shaft


@dataclass(frozen=True)
class Artifacts:
    """Spike-like artifacts (hard negatives): electrode pops and muscle bursts."""

    pop_rate_per_minute: float = 0.3
    pop_amplitude_uv: float = 500.0
    pop_tau_seconds: float = 0.15  # exponential decay time constant
    pop_channels: tuple[str, ...] = ()  # loose contacts that pop; empty: any channel
    muscle_rate_per_minute: float = 0.5
    muscle_amplitude_uv: float = 30.0  # RMS inside the burst
    muscle_n_channels: int = 4  # outermost contacts of one shaft
    muscle_duration_seconds: float = 1.0
    muscle_shafts: tuple[str, ...] = ()  # shafts near a muscle; empty: any shaft


@dataclass(frozen=True)
class PatientProfile:
    """One synthetic patient. ``shafts`` accepts a dict ``{"A": 8, "B'": 6}`` (kept as pairs)."""

    name: str
    sfreq: float
    shafts: tuple[tuple[str, int], ...]
    morphology: str
    spike_amplitude_uv: float
    spike_rate_per_minute: float
    spread: SpikeSpread
    background: Background = field(default_factory=Background)
    artifacts: Artifacts = field(default_factory=Artifacts)
    spike_polarity: int = -1
    line_freq_hz: float = 50.0
    line_noise_uv: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.shafts, Mapping):
            object.__setattr__(self, "shafts", tuple((str(k), int(v)) for k, v in self.shafts.items()))
        else:
            object.__setattr__(self, "shafts", tuple((str(k), int(v)) for k, v in self.shafts))
        self._validate()

    def _validate(self) -> None:
        layout = self.layout
        if self.sfreq <= 0:
            raise ValueError(f"patient {self.name}: sfreq must be positive, got {self.sfreq}")
        if self.morphology not in SPIKE_KINDS:
            raise ValueError(f"patient {self.name}: morphology must be one of {SPIKE_KINDS}")
        if len(layout) != len(self.shafts) or any(n < 1 for n in layout.values()):
            raise ValueError(f"patient {self.name}: shaft names must be unique with >= 1 contact")
        spread = self.spread
        if not 1 <= spread.focus_contact <= layout.get(spread.focus_shaft, 0):
            focus = f"{spread.focus_shaft}{spread.focus_contact}"
            raise ValueError(f"patient {self.name}: no focus contact {focus} in the layout")
        if spread.secondary_shaft is not None and spread.secondary_shaft not in layout:
            raise ValueError(f"patient {self.name}: no secondary shaft {spread.secondary_shaft}")
        missing = [ch for ch in self.artifacts.pop_channels if ch not in self.ch_names]
        missing += [s for s in self.artifacts.muscle_shafts if s not in layout]
        if missing:
            raise ValueError(f"patient {self.name}: artifact channels/shafts not in the layout: {missing}")
        if self.spike_polarity not in (-1, 1):
            raise ValueError(f"patient {self.name}: spike_polarity must be -1 or 1")

    @property
    def layout(self) -> dict[str, int]:
        """Shaft name -> number of contacts."""
        return dict(self.shafts)

    @property
    def ch_names(self) -> list[str]:
        """Channel names, shaft + contact number (``A1``, ``B'3``), shaft by shaft."""
        return [f"{shaft}{i}" for shaft, n in self.shafts for i in range(1, n + 1)]

    @property
    def n_chans(self) -> int:
        return sum(n for _, n in self.shafts)

    @property
    def focus_channel(self) -> str:
        return f"{self.spread.focus_shaft}{self.spread.focus_contact}"

    def with_(self, **changes: object) -> PatientProfile:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


@dataclass
class SyntheticEvent:
    """One event of a synthetic recording; only epileptiform kinds are true positives."""

    onset_seconds: float
    duration_seconds: float
    kind: str
    channels: list[str]
    peak_seconds: float
    amplitude_uv: float = 0.0  # peak amplitude on the main channel

    @property
    def is_spike(self) -> bool:
        return self.kind in SPIKE_KINDS


PATIENTS: dict[str, PatientProfile] = {
    "A": PatientProfile(
        name="A",
        sfreq=2048.0,
        shafts={"A": 8, "B'": 6, "C": 10},
        morphology="spike",
        spike_amplitude_uv=180.0,
        spike_rate_per_minute=6.0,
        spread=SpikeSpread(focus_shaft="B'", focus_contact=2, n_adjacent=2, decay_per_contact=0.55),
        background=Background(amplitude_uv=25.0, exponent=2.0, white_noise_uv=1.5),
        artifacts=Artifacts(pop_rate_per_minute=0.3, pop_amplitude_uv=600.0, pop_channels=("C9",),
                            muscle_rate_per_minute=0.5, muscle_amplitude_uv=25.0, muscle_shafts=("C",)),
        spike_polarity=-1,
        line_freq_hz=50.0,
        line_noise_uv=5.0,
        seed=1,
    ),
    "B": PatientProfile(
        name="B",
        sfreq=1024.0,
        shafts={"H": 8, "T": 6},
        morphology="sharp_wave",
        spike_amplitude_uv=130.0,
        spike_rate_per_minute=2.0,
        spread=SpikeSpread(focus_shaft="H", focus_contact=3, n_adjacent=4, decay_per_contact=0.8,
                           delay_seconds_per_contact=0.005, secondary_shaft="T", secondary_contact=2,
                           secondary_gain=0.45, secondary_delay_seconds=0.025),
        background=Background(amplitude_uv=35.0, exponent=1.8, rhythm_hz=9.5, rhythm_uv=15.0,
                              white_noise_uv=2.0, shaft_correlation=0.8),
        artifacts=Artifacts(pop_rate_per_minute=1.0, pop_amplitude_uv=400.0, pop_tau_seconds=0.1,
                            muscle_rate_per_minute=2.0, muscle_amplitude_uv=40.0, muscle_n_channels=3,
                            muscle_duration_seconds=1.5, muscle_shafts=("T",)),
        spike_polarity=1,
        line_freq_hz=60.0,
        line_noise_uv=12.0,
        seed=2,
    ),
    "C": PatientProfile(
        name="C",
        sfreq=4096.0,
        shafts={"Am'": 5, "Hp'": 5},
        morphology="spike_wave",
        spike_amplitude_uv=300.0,
        spike_rate_per_minute=12.0,
        spread=SpikeSpread(focus_shaft="Hp'", focus_contact=2, n_adjacent=1, decay_per_contact=0.4,
                           delay_seconds_per_contact=0.001, phase_reversal=True),
        background=Background(amplitude_uv=20.0, exponent=2.4, white_noise_uv=1.0, shaft_correlation=0.6),
        artifacts=Artifacts(pop_rate_per_minute=0.1, pop_amplitude_uv=900.0, pop_tau_seconds=0.25,
                            muscle_rate_per_minute=0.2, muscle_amplitude_uv=20.0, muscle_n_channels=2),
        spike_polarity=-1,
        line_freq_hz=50.0,
        line_noise_uv=2.0,
        seed=3,
    ),
    "D": PatientProfile(
        name="D",
        sfreq=2000.0,
        shafts={"X": 12, "Y'": 8},
        morphology="polyspike",
        spike_amplitude_uv=220.0,
        spike_rate_per_minute=4.0,
        spread=SpikeSpread(focus_shaft="X", focus_contact=6, n_adjacent=3, decay_per_contact=0.65,
                           delay_seconds_per_contact=0.003, secondary_shaft="Y'", secondary_contact=4,
                           secondary_gain=0.3, secondary_delay_seconds=0.015),
        background=Background(amplitude_uv=40.0, exponent=1.7, rhythm_hz=11.0, rhythm_uv=10.0,
                              white_noise_uv=2.5, shaft_correlation=0.75),
        artifacts=Artifacts(pop_rate_per_minute=0.6, pop_amplitude_uv=800.0, pop_channels=("Y'8", "X12"),
                            muscle_rate_per_minute=1.0, muscle_amplitude_uv=60.0, muscle_n_channels=5,
                            muscle_shafts=("X", "Y'")),
        spike_polarity=-1,
        line_freq_hz=60.0,
        line_noise_uv=8.0,
        seed=4,
    ),
}


def with_n_channels(profile: PatientProfile, n_chans: int) -> PatientProfile:
    """A copy of ``profile`` whose layout has ``n_chans`` channels (shafts resized or added)."""
    if n_chans < 1:
        raise ValueError(f"n_chans must be >= 1, got {n_chans}")
    counts = _distribute_contacts(profile, n_chans)
    layout = dict(zip([s for s, _ in profile.shafts], counts, strict=False))
    extra = n_chans - sum(counts)
    spare = (name for name in "EFGJKLMNOPQRSUVWZ" if name not in layout)
    while extra > 0:
        n = min(extra, MAX_CONTACTS_PER_SHAFT)
        layout[next(spare)] = n
        extra -= n
    layout = {k: v for k, v in layout.items() if v > 0}
    return _fit_profile_to_layout(profile, layout)


def benchmark_profile(sfreq_hz: float = 32000.0, n_chans: int = 24, patient: str = "A") -> PatientProfile:
    """A default patient resampled and resized for benchmarks (e.g. 32 kHz, 24 channels)."""
    return with_n_channels(PATIENTS[patient], n_chans).with_(sfreq=float(sfreq_hz))


def _distribute_contacts(profile: PatientProfile, n_chans: int) -> list[int]:
    """Contacts per existing shaft, proportional to the old layout, capped per shaft."""
    old = np.array([n for _, n in profile.shafts], float)
    target = min(n_chans, MAX_CONTACTS_PER_SHAFT * len(old))
    raw = old / old.sum() * target
    counts = np.minimum(np.floor(raw).astype(int), MAX_CONTACTS_PER_SHAFT)
    for i in np.argsort(-(raw - counts)):
        if counts.sum() >= target:
            break
        counts[i] += counts[i] < MAX_CONTACTS_PER_SHAFT
    while counts.sum() < target:
        counts[int(np.argmin(np.where(counts < MAX_CONTACTS_PER_SHAFT, counts, 10**9)))] += 1
    focus = [s for s, _ in profile.shafts].index(profile.spread.focus_shaft)
    if counts[focus] == 0:  # keep the focus shaft: take a contact from the largest shaft
        counts[int(np.argmax(counts))] -= 1
        counts[focus] = 1
    return [int(c) for c in counts]


def _fit_profile_to_layout(profile: PatientProfile, layout: dict[str, int]) -> PatientProfile:
    """Clamp the spread and artifact settings of ``profile`` to a new layout."""
    spread = profile.spread
    secondary = spread.secondary_shaft if spread.secondary_shaft in layout else None
    spread = dataclasses.replace(
        spread,
        focus_contact=min(spread.focus_contact, layout[spread.focus_shaft]),
        secondary_shaft=secondary,
        secondary_contact=min(spread.secondary_contact, layout.get(secondary, 1)) if secondary else 1,
    )
    names = {f"{s}{i}" for s, n in layout.items() for i in range(1, n + 1)}
    artifacts = dataclasses.replace(
        profile.artifacts,
        pop_channels=tuple(ch for ch in profile.artifacts.pop_channels if ch in names),
        muscle_shafts=tuple(s for s in profile.artifacts.muscle_shafts if s in layout),
    )
    return dataclasses.replace(profile, shafts=tuple(layout.items()), spread=spread, artifacts=artifacts)


# --------------------------------------------------------------------------------------------
# events


_Component = tuple[float, float, float, float]  # (time from peak, amplitude, sigma left, sigma right)


@dataclass(frozen=True)
class _Plan:
    """Everything needed to render one event, drawn once from its own random stream."""

    index: int
    kind: str
    start_seconds: float  # start of the waveform on its earliest channel
    end_seconds: float
    peak_seconds: float
    amplitude_uv: float
    channels: tuple[int, ...]
    gains: tuple[float, ...]
    delays_seconds: tuple[float, ...]
    components: tuple[_Component, ...] = ()
    tau_seconds: float = 0.0
    seed: tuple[int, ...] = ()


def make_events(profile: PatientProfile, duration_seconds: float) -> list[SyntheticEvent]:
    """All events of a recording, sorted by onset (spikes are truth, artifacts hard negatives)."""
    names = profile.ch_names
    return [
        SyntheticEvent(
            onset_seconds=plan.start_seconds,
            duration_seconds=plan.end_seconds - plan.start_seconds,
            kind=plan.kind,
            channels=[names[c] for c in plan.channels],
            peak_seconds=plan.peak_seconds,
            amplitude_uv=plan.amplitude_uv,
        )
        for plan in _plan_events(profile, duration_seconds)
    ]


def _plan_events(profile: PatientProfile, duration_seconds: float) -> list[_Plan]:
    rates = {
        profile.morphology: profile.spike_rate_per_minute,
        "artifact_pop": profile.artifacts.pop_rate_per_minute,
        "artifact_muscle": profile.artifacts.muscle_rate_per_minute,
    }
    builders = {"artifact_pop": _plan_pop, "artifact_muscle": _plan_muscle}
    plans: list[_Plan] = []
    for kind, rate in rates.items():
        build = builders.get(kind, _plan_spike)
        dead_seconds = 0.8 if kind in SPIKE_KINDS else 0.5
        for i, t in enumerate(_poisson_times(profile.seed, kind, rate, duration_seconds, dead_seconds)):
            plan = build(profile, kind, i, t)
            if plan.start_seconds >= 0 and plan.end_seconds <= duration_seconds:
                plans.append(plan)
    plans.sort(key=lambda p: (p.start_seconds, p.kind, p.index))
    return plans


def _poisson_times(seed: int, kind: str, rate_per_minute: float, duration_seconds: float,
                   dead_seconds: float) -> list[float]:
    """Event times of a Poisson process with a dead time; a longer duration extends the list."""
    if rate_per_minute <= 0:
        return []
    rng = np.random.default_rng([seed, _S_EVENTS[kind]])
    mean_gap = max(60.0 / rate_per_minute - dead_seconds, 1e-3)
    times, t = [], 0.0
    while True:
        t += dead_seconds + rng.exponential(mean_gap)
        if t >= duration_seconds:
            return times
        times.append(t)


def _event_rng(profile: PatientProfile, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([profile.seed, _S_EVENTS[kind], index + 1])


def _amplitude_jitter(rng: np.random.Generator) -> float:
    return float(np.clip(rng.lognormal(0.0, 0.2), 0.6, 1.6))


def _morphology_components(morphology: str, rng: np.random.Generator) -> list[_Component]:
    """Gaussian bumps (time from main peak, relative amplitude, sigma left, sigma right)."""
    spike = [(-0.012, -0.08, 0.004, 0.004), (0.0, 1.0, 0.004, 0.007), (0.022, -0.3, 0.008, 0.014)]
    if morphology == "spike":
        return spike
    if morphology == "sharp_wave":
        return [(-0.03, -0.06, 0.01, 0.01), (0.0, 1.0, 0.014, 0.025), (0.07, -0.25, 0.025, 0.04)]
    if morphology == "spike_wave":
        return [*spike[:2], (0.025, -0.35, 0.008, 0.015), (0.15, 0.55, 0.05, 0.07)]
    n = int(rng.integers(3, 6))
    comps = []
    t = 0.0
    for i in range(n):
        comps.append((t, 1.0 - 0.12 * i, 0.0035, 0.005))
        gap = float(rng.uniform(0.015, 0.022))
        comps.append((t + gap / 2, -0.3, 0.003, 0.004))
        t += gap
    comps.append((t + 0.1, 0.4, 0.04, 0.06))
    return comps


def _spike_channels(profile: PatientProfile) -> tuple[list[int], list[float], list[float]]:
    """Channel indices, gains (signed) and delays of a spike, from the profile's spread."""
    spread = profile.spread
    names = profile.ch_names
    channels, gains, delays = [], [], []
    sites = [(spread.focus_shaft, spread.focus_contact, 1.0, 0.0)]
    if spread.secondary_shaft is not None:
        sites.append((spread.secondary_shaft, spread.secondary_contact, spread.secondary_gain,
                      spread.secondary_delay_seconds))
    layout = profile.layout
    for shaft, contact, gain, delay in sites:
        for d in sorted(range(-spread.n_adjacent, spread.n_adjacent + 1), key=lambda d: (abs(d), d)):
            if not 1 <= contact + d <= layout[shaft]:
                continue
            sign = -1.0 if spread.phase_reversal and d < 0 else 1.0
            channels.append(names.index(f"{shaft}{contact + d}"))
            gains.append(sign * gain * spread.decay_per_contact ** abs(d))
            delays.append(delay + abs(d) * spread.delay_seconds_per_contact)
    return channels, gains, delays


def _plan_spike(profile: PatientProfile, kind: str, index: int, t: float) -> _Plan:
    rng = _event_rng(profile, kind, index)
    width = float(rng.uniform(0.85, 1.2))
    amplitude = profile.spike_amplitude_uv * _amplitude_jitter(rng)
    comps = tuple(
        (t0 * width, a * amplitude * profile.spike_polarity, sl * width, sr * width)
        for t0, a, sl, sr in _morphology_components(kind, rng)
    )
    channels, gains, delays = _spike_channels(profile)
    delays = [d + float(rng.uniform(0, 0.0005)) * (d > 0) for d in delays]
    before = min(t0 - 3 * sl for t0, _, sl, _ in comps)
    after = max(t0 + 3 * sr for t0, _, _, sr in comps)
    return _Plan(index=index, kind=kind, start_seconds=t + before, end_seconds=t + after + max(delays),
                 peak_seconds=t, amplitude_uv=amplitude, channels=tuple(channels), gains=tuple(gains),
                 delays_seconds=tuple(delays), components=comps)


def _plan_pop(profile: PatientProfile, kind: str, index: int, t: float) -> _Plan:
    rng = _event_rng(profile, kind, index)
    names = profile.ch_names
    pops = profile.artifacts.pop_channels
    channel = names.index(pops[int(rng.integers(len(pops)))]) if pops else int(rng.integers(len(names)))
    tau = profile.artifacts.pop_tau_seconds * float(rng.uniform(0.6, 1.5))
    amplitude = profile.artifacts.pop_amplitude_uv * _amplitude_jitter(rng) * float(rng.choice([-1, 1]))
    rise = _pop_rise_seconds(profile.sfreq)
    peak = rise * math.log1p(tau / rise)
    return _Plan(index=index, kind=kind, start_seconds=t, end_seconds=t + 5 * tau, peak_seconds=t + peak,
                 amplitude_uv=abs(amplitude), channels=(channel,), gains=(amplitude,), delays_seconds=(0.0,),
                 tau_seconds=tau)


def _pop_rise_seconds(sfreq: float) -> float:
    return max(0.0003, 0.5 / sfreq)


def _plan_muscle(profile: PatientProfile, kind: str, index: int, t: float) -> _Plan:
    rng = _event_rng(profile, kind, index)
    art = profile.artifacts
    shafts = art.muscle_shafts or tuple(s for s, _ in profile.shafts)
    shaft = shafts[int(rng.integers(len(shafts)))]
    n_contacts = profile.layout[shaft]
    names = profile.ch_names
    outer = range(n_contacts, max(n_contacts - art.muscle_n_channels, 0), -1)  # lateral contacts
    channels = tuple(names.index(f"{shaft}{c}") for c in outer)
    gains = tuple(0.8**i for i in range(len(channels)))
    duration = art.muscle_duration_seconds * float(rng.uniform(0.5, 1.5))
    amplitude = art.muscle_amplitude_uv * _amplitude_jitter(rng)
    return _Plan(index=index, kind=kind, start_seconds=t, end_seconds=t + duration,
                 peak_seconds=t + duration / 2, amplitude_uv=amplitude, channels=channels, gains=gains,
                 delays_seconds=(0.0,) * len(channels), seed=(profile.seed, _S_EVENTS[kind], index + 1, 7))


# --------------------------------------------------------------------------------------------
# event waveforms


@dataclass
class _Rendered:
    """An event's waveform on the absolute sample grid: ``rows[i]`` starts at ``starts[i]``."""

    channels: tuple[int, ...]
    starts: list[int]
    rows: list[np.ndarray]
    stop: int


def _render(plan: _Plan, sfreq: float) -> _Rendered:
    if plan.kind == "artifact_pop":
        return _render_pop(plan, sfreq)
    if plan.kind == "artifact_muscle":
        return _render_muscle(plan, sfreq)
    return _render_spike(plan, sfreq)


def _render_spike(plan: _Plan, sfreq: float) -> _Rendered:
    """One waveform on the focus grid, shifted by whole samples and scaled per channel."""
    start = math.floor(plan.start_seconds * sfreq)
    stop = math.ceil((plan.end_seconds - max(plan.delays_seconds)) * sfreq) + 1
    t = np.arange(start, stop) / sfreq - plan.peak_seconds
    wave = np.zeros(t.size)
    for t0, amp, sl, sr in plan.components:
        sigma = np.where(t < t0, sl, sr)
        wave += amp * np.exp(-0.5 * ((t - t0) / sigma) ** 2)
    shifts = [round(d * sfreq) for d in plan.delays_seconds]
    rows = [(g * wave).astype(np.float32) for g in plan.gains]
    return _Rendered(plan.channels, [start + s for s in shifts], rows, stop + max(shifts))


def _render_pop(plan: _Plan, sfreq: float) -> _Rendered:
    start = math.ceil(plan.start_seconds * sfreq)
    stop = math.ceil(plan.end_seconds * sfreq) + 1
    t = np.arange(start, stop) / sfreq - plan.start_seconds
    rise = _pop_rise_seconds(sfreq)
    wave = -np.expm1(-t / rise) * np.exp(-t / plan.tau_seconds)
    wave *= plan.gains[0] / max(float(wave.max()), 1e-12)
    return _Rendered(plan.channels, [start], [wave.astype(np.float32)], stop)


def _render_muscle(plan: _Plan, sfreq: float) -> _Rendered:
    """Band-limited (30-100 Hz) noise, partly shared across channels, under a smooth envelope."""
    start = math.ceil(plan.start_seconds * sfreq)
    stop = max(math.floor(plan.end_seconds * sfreq), start + 8)
    n = stop - start
    rng = np.random.default_rng(list(plan.seed))
    spectrum = np.fft.rfft(rng.standard_normal((len(plan.channels) + 1, n)), axis=-1)
    freqs = np.fft.rfftfreq(n, 1.0 / sfreq)
    spectrum[:, (freqs < 30.0) | (freqs > min(100.0, 0.45 * sfreq))] = 0
    noise = np.fft.irfft(spectrum, n, axis=-1)
    noise /= np.maximum(noise.std(axis=-1, keepdims=True), 1e-12)
    mixed = 0.7 * noise[:1] + 0.714 * noise[1:]  # ~50 % shared variance between channels
    envelope = signal.windows.tukey(n, 0.4)
    rows = [(plan.amplitude_uv * g * envelope * row).astype(np.float32) for g, row in zip(plan.gains, mixed,
                                                                                          strict=True)]
    return _Rendered(plan.channels, [start] * len(rows), rows, stop)


# --------------------------------------------------------------------------------------------
# background


def _upsampling_factor(sfreq: float) -> int:
    return max(1, round(sfreq / LOW_RATE_TARGET_HZ))


def _pink_sos(exponent: float, fs: float, f_low_hz: float = 0.5) -> np.ndarray:
    """IIR (second-order sections) whose power spectrum falls as 1/f^exponent above f_low_hz.

    Whole powers are real poles at f_low_hz; the fractional rest comes from interlaced
    pole/zero pairs spaced log-evenly up to 0.4 fs (matched-z mapping).
    """
    slope = exponent / 2.0  # amplitude slope
    n_poles = int(math.floor(slope))
    rest = slope - n_poles
    f_high = 0.4 * fs
    poles = [f_low_hz] * n_poles
    zeros: list[float] = []
    if rest > 1e-3:
        n_pairs = max(2, math.ceil(2.5 * math.log10(f_high / f_low_hz)))
        step = (f_high / f_low_hz) ** (1.0 / n_pairs)
        poles += [f_low_hz * step**i for i in range(n_pairs)]
        zeros += [f_low_hz * step ** (i + rest) for i in range(n_pairs)]
    z = np.exp(-2 * np.pi * np.array(zeros) / fs)
    p = np.exp(-2 * np.pi * np.array(poles) / fs)
    if p.size == 0:
        return np.array([[1.0, 0, 0, 1.0, 0, 0]])
    return signal.zpk2sos(z, p, 1.0)


def _unit_rms(sos: np.ndarray, fs: float, seconds: float = 60.0) -> np.ndarray:
    """Scale ``sos`` so white noise of unit variance comes out with unit RMS."""
    impulse = np.zeros(int(seconds * fs))
    impulse[0] = 1.0
    h = signal.sosfilt(sos, impulse)
    sos = sos.copy()
    sos[0, :3] /= math.sqrt(float(np.sum(h * h)))
    return sos


def _shaft_mixing(profile: PatientProfile) -> np.ndarray:
    """Lower-triangular matrix giving contacts of a shaft correlation rho^|i-j|."""
    rho = profile.background.shaft_correlation
    mix = np.zeros((profile.n_chans, profile.n_chans))
    i0 = 0
    for _, n in profile.shafts:
        idx = np.arange(n)
        cov = rho ** np.abs(idx[:, None] - idx[None, :])
        mix[i0:i0 + n, i0:i0 + n] = np.linalg.cholesky(cov + 1e-9 * np.eye(n))
        i0 += n
    return mix


class _LowRate:
    """Background at the low rate, produced block by block with IIR state carried over.

    Sample ``j`` of the stream is at time ``j / low_rate_hz``; the stream starts at ``j = -1``
    (one sample of history for the cubic interpolation).
    """

    def __init__(self, profile: PatientProfile) -> None:
        self.profile = profile
        self.k = _upsampling_factor(profile.sfreq)
        self.rate_hz = profile.sfreq / self.k
        bg = profile.background
        self.n_chans = profile.n_chans
        self.n_shafts = len(profile.shafts)
        self.pink = _unit_rms(_pink_sos(bg.exponent, self.rate_hz), self.rate_hz)
        self.rhythm = self._rhythm_sos()
        rng = np.random.default_rng([profile.seed, _S_LAYOUT])
        self.mix = _shaft_mixing(profile).astype(np.float32)
        self.bg_gain = (bg.amplitude_uv * rng.uniform(0.7, 1.3, self.n_chans)).astype(np.float32)
        shaft_of = np.repeat(np.arange(self.n_shafts), [n for _, n in profile.shafts])
        self.rhythm_gain = (bg.rhythm_uv * rng.uniform(0.2, 1.0, self.n_shafts)[shaft_of]
                            * rng.uniform(0.7, 1.0, self.n_chans)).astype(np.float32)
        self.shaft_of = shaft_of
        self.line_gain = (profile.line_noise_uv * rng.uniform(0.5, 1.5, self.n_chans)).astype(np.float32)
        self.line_phase = float(rng.uniform(0, 2 * np.pi))
        self._init_state()
        self.buf = np.zeros((self.n_chans, 0), np.float32)
        self.buf_start = -1  # j of buf[:, 0]
        self.next_block = 0

    def _rhythm_sos(self) -> np.ndarray | None:
        bg = self.profile.background
        if not bg.rhythm_hz or bg.rhythm_uv <= 0:
            return None
        half = bg.rhythm_bandwidth_hz / 2
        band = [max(bg.rhythm_hz - half, 0.1), min(bg.rhythm_hz + half, 0.45 * self.rate_hz)]
        return _unit_rms(signal.butter(2, band, btype="band", fs=self.rate_hz, output="sos"), self.rate_hz)

    def _init_state(self) -> None:
        """Run the filters on a warm-up stretch so t=0 is already in steady state."""
        rng = np.random.default_rng([self.profile.seed, _S_WARMUP])
        self.zi_pink = np.zeros((self.pink.shape[0], self.n_chans, 2))
        self.zi_rhythm = None if self.rhythm is None else np.zeros((self.rhythm.shape[0], self.n_shafts, 2))
        for _ in range(math.ceil(_WARMUP_SECONDS * self.rate_hz / _LOW_BLOCK)):
            noise = rng.standard_normal((self.n_chans + self.n_shafts, _LOW_BLOCK))
            _, self.zi_pink = signal.sosfilt(self.pink, noise[:self.n_chans], axis=-1, zi=self.zi_pink)
            if self.rhythm is not None:
                _, self.zi_rhythm = signal.sosfilt(self.rhythm, noise[self.n_chans:], axis=-1,
                                                   zi=self.zi_rhythm)

    def _block(self) -> np.ndarray:
        """The next block of low-rate background (float32 microvolts)."""
        rng = np.random.default_rng([self.profile.seed, _S_LOW, self.next_block])
        j0 = self.next_block * _LOW_BLOCK - 1
        self.next_block += 1
        pink, self.zi_pink = signal.sosfilt(self.pink, rng.standard_normal((self.n_chans, _LOW_BLOCK)),
                                            axis=-1, zi=self.zi_pink)
        out = self.mix @ pink.astype(np.float32)
        out *= self.bg_gain[:, None]
        if self.rhythm is not None:
            rhythm, self.zi_rhythm = signal.sosfilt(
                self.rhythm, rng.standard_normal((self.n_shafts, _LOW_BLOCK)), axis=-1, zi=self.zi_rhythm)
            out += self.rhythm_gain[:, None] * rhythm.astype(np.float32)[self.shaft_of]
        out += self.line_gain[:, None] * self._line(j0, _LOW_BLOCK)[None, :]
        return out

    def _line(self, j0: int, n: int) -> np.ndarray:
        t = (np.arange(j0, j0 + n) / self.rate_hz).astype(np.float64)
        f = self.profile.line_freq_hz
        if not 0 < f < 0.45 * self.rate_hz:
            return np.zeros(n, np.float32)
        wave = np.sin(2 * np.pi * f * t + self.line_phase)
        if 3 * f < 0.45 * self.rate_hz:
            wave += 0.3 * np.sin(2 * np.pi * 3 * f * t + 2 * self.line_phase)
        return wave.astype(np.float32)

    def take(self, j0: int, j1: int) -> np.ndarray:
        """Samples ``j0 <= j < j1``; later calls must not ask for earlier samples than ``j0``."""
        if j0 < self.buf_start:
            raise ValueError("the low-rate stream only moves forward")
        blocks = [self.buf]
        end = self.buf_start + self.buf.shape[1]
        while end < j1:
            blocks.append(self._block())
            end += _LOW_BLOCK
        buf = np.concatenate(blocks, axis=1) if len(blocks) > 1 else self.buf
        self.buf = buf[:, j0 - self.buf_start:]
        self.buf_start = j0
        return self.buf[:, :j1 - j0]


def _cubic_weights(k: int) -> np.ndarray:
    """Catmull-Rom weights [4, k] for output phases m/k between samples 1 and 2 of 4."""
    t = np.arange(k) / k
    return np.stack([
        (-t**3 + 2 * t**2 - t) / 2,
        (3 * t**3 - 5 * t**2 + 2) / 2,
        (-3 * t**3 + 4 * t**2 + t) / 2,
        (t**3 - t**2) / 2,
    ]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# generation


class _Generator:
    """Renders [s0, s1) sample ranges in increasing order."""

    def __init__(self, profile: PatientProfile, duration_seconds: float) -> None:
        self.profile = profile
        self.sfreq = float(profile.sfreq)
        self.n_times = round(duration_seconds * self.sfreq)
        self.low = _LowRate(profile)
        self.weights = _cubic_weights(self.low.k)
        self.plans = _plan_events(profile, duration_seconds)
        self.next_plan = 0
        self.active: list[_Rendered] = []
        table_rng = np.random.default_rng([profile.seed, _S_WHITE_TABLE])
        self.white = table_rng.standard_normal(_WHITE_TABLE, dtype=np.float32)
        self.white *= np.float32(profile.background.white_noise_uv)

    def render(self, s0: int, s1: int) -> np.ndarray:
        with _SingleThreadedBlas():
            out = self._background(s0, s1)
        self._add_white(out, s0, s1)
        self._add_events(out, s0, s1)
        return out

    def _background(self, s0: int, s1: int) -> np.ndarray:
        k = self.low.k
        if k == 1:
            return self.low.take(s0, s1).copy()
        ja, jb = s0 // k, (s1 - 1) // k + 1  # output samples [ja*k, jb*k) cover the chunk
        x = self.low.take(ja - 1, jb + 2)
        m = jb - ja
        taps = np.stack([x[:, i:i + m] for i in range(4)], axis=-1).reshape(-1, 4)
        full = np.matmul(taps, self.weights).reshape(self.low.n_chans, m * k)
        return np.ascontiguousarray(full[:, s0 - ja * k:s1 - ja * k])

    def _add_white(self, out: np.ndarray, s0: int, s1: int) -> None:
        if self.profile.background.white_noise_uv <= 0:
            return
        n_chans = out.shape[0]
        for block in range(s0 // _WHITE_BLOCK, (s1 - 1) // _WHITE_BLOCK + 1):
            b0 = block * _WHITE_BLOCK
            a, b = max(s0, b0), min(s1, b0 + _WHITE_BLOCK)
            offsets = np.random.default_rng([self.profile.seed, _S_WHITE, block]).integers(
                0, _WHITE_TABLE - _WHITE_BLOCK, n_chans)
            for c in range(n_chans):
                o = int(offsets[c]) + a - b0
                out[c, a - s0:b - s0] += self.white[o:o + b - a]

    def _add_events(self, out: np.ndarray, s0: int, s1: int) -> None:
        while self.next_plan < len(self.plans) and self.plans[self.next_plan].start_seconds * self.sfreq < s1:
            self.active.append(_render(self.plans[self.next_plan], self.sfreq))
            self.next_plan += 1
        for ev in self.active:
            for c, start, row in zip(ev.channels, ev.starts, ev.rows, strict=True):
                a, b = max(s0, start), min(s1, start + row.size)
                if a < b:
                    out[c, a - s0:b - s0] += row[a - start:b - start]
        self.active = [ev for ev in self.active if ev.stop > s1]


class _SingleThreadedBlas:
    """Limit BLAS to one thread while generating: idle BLAS threads spin and steal the cores the
    writer uses. Reference-counted, so overlapping generators in several threads restore the
    original limits only when the last one leaves."""

    _lock = threading.Lock()
    _depth = 0
    _limiter: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> None:
        with self._lock:
            cls = type(self)
            if cls._depth == 0:
                controller = _blas_controller()
                if controller is not None:
                    cls._limiter = controller.limit(limits=1, user_api="blas")
                    cls._limiter.__enter__()
            cls._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            cls = type(self)
            cls._depth -= 1
            if cls._depth == 0 and cls._limiter is not None:
                cls._limiter.__exit__(None, None, None)
                cls._limiter = None


@functools.cache
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None
    return ThreadpoolController()


def iter_chunks(profile: PatientProfile, duration_seconds: float,
                chunk_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """Yield the recording as float32 microvolt arrays ``[n_chans, n_samples]``, in time order."""
    gen = _Generator(profile, duration_seconds)
    step = max(1, round(chunk_seconds * gen.sfreq))
    logger.debug("patient %s: %d samples at %g Hz in chunks of %d (background at %g Hz)",
                 profile.name, gen.n_times, gen.sfreq, step, gen.low.rate_hz)
    for s0 in range(0, gen.n_times, step):
        yield gen.render(s0, min(s0 + step, gen.n_times))


def generate(profile: PatientProfile, duration_seconds: float, chunk_seconds: float = 10.0) -> np.ndarray:
    """The whole recording in memory (short durations only): float32 microvolts [n_chans, n_times]."""
    chunks = list(iter_chunks(profile, duration_seconds, chunk_seconds))
    if not chunks:
        return np.zeros((profile.n_chans, 0), np.float32)
    return np.concatenate(chunks, axis=1)


def _prefetch(chunks: Iterator[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """Run ``chunks`` in a thread, ``depth`` items ahead (generation overlaps writing)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in chunks:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # re-raised in the consumer
            put(exc)

    thread = threading.Thread(target=produce, name="synthetic-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def physical_range_uv(profile: PatientProfile) -> float:
    """A symmetric range (+/- this many uV) that holds the signal, events included, unclipped."""
    bg = profile.background
    art = profile.artifacts
    rms = math.hypot(1.3 * bg.amplitude_uv, bg.rhythm_uv, bg.white_noise_uv)
    events = max(profile.spike_amplitude_uv, art.pop_amplitude_uv if art.pop_rate_per_minute > 0 else 0.0,
                 4 * art.muscle_amplitude_uv if art.muscle_rate_per_minute > 0 else 0.0)
    peak = 1.6 * events + 7 * rms + 2 * profile.line_noise_uv
    magnitude = 10 ** math.floor(math.log10(peak))
    return math.ceil(peak / magnitude * 2) / 2 * magnitude


# --------------------------------------------------------------------------------------------
# EDF+


def _field(value: object, width: int) -> bytes:
    text = str(value)
    raw = text.encode("ascii", errors="replace")
    if len(raw) > width:
        raise ValueError(f"EDF header field {text!r} is longer than {width} characters")
    return raw.ljust(width, b" ")


def _edf_number(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if len(text) <= 8 else f"{value:.8g}"[:8]


def _tal_time(seconds: float) -> str:
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return ("+" + text) if not text.startswith("-") else text


def _annotation_bytes(events: Sequence[SyntheticEvent], n_records: int) -> list[bytes]:
    """EDF+ TALs per 1-second record: time-keeping TAL then the events starting in the record."""
    per_record = [f"{_tal_time(r)}\x14\x14\x00".encode() for r in range(n_records)]
    for ev in events:
        r = min(max(int(ev.onset_seconds), 0), n_records - 1)
        tal = f"{_tal_time(ev.onset_seconds)}\x15{_tal_time(ev.duration_seconds)[1:]}\x14{ev.kind}\x14\x00"
        per_record[r] += tal.encode("utf-8")
    return per_record


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _edf_header(profile: PatientProfile, n_records: int, samples_per_record: list[int],
                range_uv: float, start: datetime, with_annotations: bool) -> bytes:
    labels = profile.ch_names + (["EDF Annotations"] if with_annotations else [])
    n_sig = len(labels)
    n_data = profile.n_chans
    name = profile.name.replace(" ", "_")
    head = b"".join([
        _field("0", 8),
        _field(f"SYN-{name} X X Synthetic_{name}", 80),
        _field(f"Startdate {start.day:02d}-{_MONTHS[start.month - 1]}-{start.year} X X synthetic", 80),
        _field(start.strftime("%d.%m.%y"), 8),
        _field(start.strftime("%H.%M.%S"), 8),
        _field(256 * (n_sig + 1), 8),
        _field("EDF+C", 44),
        _field(n_records, 8),
        _field(1, 8),
        _field(n_sig, 4),
    ])

    def column(values: list[object], width: int) -> bytes:
        return b"".join(_field(v, width) for v in values)

    annot = with_annotations
    head += column(labels, 16)
    head += column(["SEEG depth electrode"] * n_data + [""] * annot, 80)
    head += column(["uV"] * n_data + [""] * annot, 8)
    head += column([_edf_number(-range_uv)] * n_data + ["-1"] * annot, 8)
    head += column([_edf_number(range_uv)] * n_data + ["1"] * annot, 8)
    head += column(["-32767"] * n_data + ["-32768"] * annot, 8)
    head += column(["32767"] * n_data + ["32767"] * annot, 8)
    head += column([""] * n_sig, 80)
    head += column(samples_per_record, 8)
    head += column([""] * n_sig, 32)
    assert len(head) == 256 * (n_sig + 1)
    return head


def write_edf(path: str | Path, profile: PatientProfile, duration_seconds: float,
              with_annotations: bool = True, chunk_seconds: int = 10,
              start: datetime = DEFAULT_START) -> Path:
    """Write an EDF+C file (int16, 1-second records, uV), streaming chunk by chunk.

    The duration is rounded up to whole seconds. Labels are the plain channel names (MNE keeps
    ``"SEEG A1"`` as the name unless ``infer_types=True``); the transducer field says SEEG.
    """
    path = Path(path)
    spr = int(profile.sfreq)
    if spr != profile.sfreq:
        raise ValueError(f"EDF with 1-second records needs an integer sampling rate, got {profile.sfreq}")
    n_records = max(1, math.ceil(duration_seconds - 1e-9))
    events = make_events(profile, n_records) if with_annotations else []
    tals = _annotation_bytes(events, n_records) if with_annotations else []
    n_annot = (max(len(t) for t in tals) + 1) // 2 + 4 if tals else 0
    n_chans = profile.n_chans
    range_uv = physical_range_uv(profile)
    gain = np.float32(32767.0 / range_uv)
    header = _edf_header(profile, n_records, [spr] * n_chans + ([n_annot] if tals else []), range_uv,
                         start, with_annotations)
    chunk_records = max(1, int(chunk_seconds))
    record_len = n_chans * spr + n_annot
    clipped = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(header)
        r0 = 0
        for chunk in _prefetch(iter_chunks(profile, n_records, chunk_records)):
            n_rec = chunk.shape[1] // spr
            buf = np.zeros((n_rec, record_len), "<i2")
            data = buf[:, :n_chans * spr].reshape(n_rec, n_chans, spr)
            clipped += _quantise(chunk, gain, data)
            for i in range(n_rec) if tals else ():
                raw = tals[r0 + i].ljust(2 * n_annot, b"\x00")
                buf[i, n_chans * spr:] = np.frombuffer(raw, "<i2")
            buf.tofile(f)
            r0 += n_rec
    if clipped:
        logger.warning("%s: %d samples clipped to +/-%g uV", path, clipped, range_uv)
    logger.info("wrote %s: %d channels, %d s at %g Hz, %d events", path, n_chans, n_records, profile.sfreq,
                len(events))
    return path


def _quantise(chunk: np.ndarray, gain: np.float32, data: np.ndarray) -> int:
    """Scale, clip and round ``chunk`` [n_chans, n_rec*spr] into ``data`` [n_rec, n_chans, spr]."""
    n_rec, _, spr = data.shape
    tmp = np.empty(chunk.shape[1], np.float32)
    clipped = 0
    for c, row in enumerate(chunk):
        np.multiply(row, gain, out=tmp)
        clipped += int(np.count_nonzero(np.abs(tmp) > 32767))
        np.clip(tmp, -32767, 32767, out=tmp)
        np.rint(tmp.reshape(n_rec, spr), out=data[:, c, :], casting="unsafe")
    return clipped


# --------------------------------------------------------------------------------------------
# HDF5, TSV, BIDS


def write_hdf5(path: str | Path, profile: PatientProfile, duration_seconds: float,
               dtype: str = "float32", chunk_seconds: float = 10.0) -> Path:
    """Write dataset ``data`` [n_chans, n_times] with attrs ``sfreq``, ``ch_names``, ``units``="uV".

    With ``dtype="int16"`` the attribute ``scale_uv`` gives microvolts per count.
    """
    path = Path(path)
    n_chans = profile.n_chans
    n_times = round(duration_seconds * profile.sfreq)
    dt = np.dtype(dtype)
    scale = physical_range_uv(profile) / 32767.0 if dt == np.int16 else 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("data", shape=(n_chans, n_times), dtype=dt,
                                chunks=(n_chans, max(1, min(n_times, 8192))))
        dset.attrs["sfreq"] = float(profile.sfreq)
        dset.attrs["ch_names"] = np.array(profile.ch_names, dtype=h5py.string_dtype())
        dset.attrs["units"] = "uV"
        dset.attrs["scale_uv"] = scale
        for key in ("sfreq", "ch_names", "units", "scale_uv"):
            f.attrs[key] = dset.attrs[key]
        f.attrs["patient"] = profile.name
        f.attrs["seed"] = profile.seed
        s0 = 0
        for chunk in _prefetch(iter_chunks(profile, duration_seconds, chunk_seconds)):
            if dt == np.int16:
                chunk = np.clip(np.rint(chunk / scale), -32767, 32767)
            dset[:, s0:s0 + chunk.shape[1]] = chunk.astype(dt, copy=False)
            s0 += chunk.shape[1]
    logger.info("wrote %s: %d channels x %d samples (%s)", path, n_chans, n_times, dt)
    return path


EVENTS_COLUMNS = ("onset", "duration", "trial_type", "channels", "peak")


def write_events_tsv(path: str | Path, events: Iterable[SyntheticEvent]) -> Path:
    """BIDS-style events.tsv: onset, duration, trial_type, channels (comma-joined), peak (s)."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(EVENTS_COLUMNS)
        for ev in events:
            writer.writerow([f"{ev.onset_seconds:.6f}", f"{ev.duration_seconds:.6f}", ev.kind,
                             ",".join(ev.channels), f"{ev.peak_seconds:.6f}"])
    return path


def read_events_tsv(path: str | Path) -> list[SyntheticEvent]:
    """Events written by :func:`write_events_tsv`."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        SyntheticEvent(onset_seconds=float(r["onset"]), duration_seconds=float(r["duration"]),
                       kind=r["trial_type"], channels=[c for c in r["channels"].split(",") if c],
                       peak_seconds=float(r["peak"]))
        for r in rows
    ]


def write_bids(root: str | Path, subject: str, profile: PatientProfile, duration_seconds: float,
               fmt: str = "edf") -> Path:
    """Write a BIDS iEEG dataset for one subject; returns the path of the recording file."""
    if fmt != "edf":
        raise ValueError(f"BIDS output supports fmt='edf' only, got {fmt!r}")
    root = Path(root)
    ieeg = root / f"sub-{subject}" / "ieeg"
    ieeg.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{subject}_task-rest"
    duration_seconds = max(1, math.ceil(duration_seconds - 1e-9))
    recording = write_edf(ieeg / f"{stem}_ieeg.edf", profile, duration_seconds)
    _write_channels_tsv(ieeg / f"{stem}_channels.tsv", profile)
    write_events_tsv(ieeg / f"{stem}_events.tsv", make_events(profile, duration_seconds))
    _write_json(ieeg / f"{stem}_events.json", _EVENTS_SIDECAR)
    _write_json(ieeg / f"{stem}_ieeg.json", _ieeg_sidecar(profile, duration_seconds))
    description = root / "dataset_description.json"
    if not description.exists():
        _write_json(description, {"Name": "spike-al synthetic sEEG", "BIDSVersion": "1.9.0",
                                  "DatasetType": "raw", "GeneratedBy": [{"Name": "converters.synthetic"}]})
    return recording


def _write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")


def _write_channels_tsv(path: Path, profile: PatientProfile) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["name", "type", "units", "low_cutoff", "high_cutoff", "sampling_frequency",
                         "group", "status"])
        for shaft, n in profile.shafts:
            for i in range(1, n + 1):
                row = [f"{shaft}{i}", "SEEG", "uV", "n/a", "n/a", f"{profile.sfreq:g}", shaft, "good"]
                writer.writerow(row)


def _ieeg_sidecar(profile: PatientProfile, duration_seconds: float) -> dict:
    return {
        "TaskName": "rest",
        "SamplingFrequency": float(profile.sfreq),
        "PowerLineFrequency": float(profile.line_freq_hz),
        "SoftwareFilters": "n/a",
        "iEEGReference": "synthetic common reference",
        "SEEGChannelCount": profile.n_chans,
        "ECOGChannelCount": 0,
        "EEGChannelCount": 0,
        "RecordingDuration": float(duration_seconds),
        "RecordingType": "continuous",
        "Manufacturer": "n/a (synthetic: converters.synthetic)",
        "SyntheticPatient": profile.name,
        "SyntheticSeed": profile.seed,
    }


_EVENTS_SIDECAR = {
    "trial_type": {
        "Description": "Event kind. Epileptiform (truth): " + ", ".join(SPIKE_KINDS)
        + ". Spike-like artifacts (hard negatives): " + ", ".join(ARTIFACT_KINDS) + ".",
    },
    "channels": {"Description": "Comma-separated channels the event appears on, main channel first."},
    "peak": {"Description": "Time of the main peak on the main channel.", "Units": "s"},
}


# --------------------------------------------------------------------------------------------
# command line


def _describe(key: str, p: PatientProfile) -> str:
    return (f"  {key}: {p.morphology}, {p.spike_amplitude_uv:g} uV, {p.spike_rate_per_minute:g}/min, "
            f"{p.n_chans} channels ({', '.join(p.layout)}), {p.sfreq:g} Hz")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m converters.synthetic",
        description="Write a synthetic sEEG recording with spikes, background and artifacts.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m converters.synthetic --patient A --duration 600 --format edf --out /tmp/a.edf\n"
               "  python -m converters.synthetic --patient A --duration 3600 --sfreq 32000 --n-chans 24 \\\n"
               "      --format hdf5 --out /tmp/a32k.h5\n"
               "  python -m converters.synthetic --patient C --duration 300 --format bids --out /tmp/bids\n\n"
               "patients:\n" + "\n".join(_describe(k, p) for k, p in PATIENTS.items())
               + "\n\nEDF and BIDS round the duration up to whole seconds. The written path is printed.",
    )
    parser.add_argument("--patient", choices=sorted(PATIENTS), default="A", help="default patient profile")
    parser.add_argument("--duration", type=float, required=True, help="seconds to generate")
    parser.add_argument("--format", choices=("edf", "hdf5", "bids"), default="edf",
                        help="EDF+ with annotations, HDF5 (dataset 'data', float32 uV) or a BIDS iEEG tree")
    parser.add_argument("--out", type=Path, required=True, help="output file (edf, hdf5) or BIDS root")
    parser.add_argument("--sfreq", type=float, help="override the sampling rate (Hz)")
    parser.add_argument("--n-chans", type=int, help="override the number of channels (layout resized)")
    parser.add_argument("--seed", type=int, help="override the random seed")
    parser.add_argument("--subject", help="BIDS subject label (default: the patient name)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    profile = PATIENTS[args.patient]
    if args.sfreq:
        profile = profile.with_(sfreq=args.sfreq)
    if args.n_chans:
        profile = with_n_channels(profile, args.n_chans)
    if args.seed is not None:
        profile = profile.with_(seed=args.seed)
    if args.format == "edf":
        written = write_edf(args.out, profile, args.duration)
    elif args.format == "hdf5":
        written = write_hdf5(args.out, profile, args.duration)
    else:
        written = write_bids(args.out, args.subject or profile.name, profile, args.duration)
    print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
