"""Synthetic patients: electrode layout, spike morphology and spread, background, artifacts, line noise."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPIKE_KINDS = ("spike", "sharp_wave", "spike_wave", "polyspike")
ARTIFACT_KINDS = ("artifact_pop", "artifact_muscle")
EVENT_KINDS = SPIKE_KINDS + ARTIFACT_KINDS
MAX_CONTACTS_PER_SHAFT = 18

# Random streams: every draw uses numpy SeedSequence entropy [profile.seed, stream, index...].
STREAM_LAYOUT, STREAM_LOW_RATE, STREAM_WARMUP, STREAM_WHITE_TABLE, STREAM_WHITE = 1, 2, 3, 4, 5
EVENT_STREAMS = {kind: 100 + i for i, kind in enumerate(EVENT_KINDS)}


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

    def with_(self, **changes: Any) -> PatientProfile:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


PATIENTS: dict[str, PatientProfile] = {
    "A": PatientProfile(
        name="A",
        sfreq=2048.0,
        shafts=(("A", 8), ("B'", 6), ("C", 10)),
        morphology="spike",
        spike_amplitude_uv=180.0,
        spike_rate_per_minute=6.0,
        spread=SpikeSpread(focus_shaft="B'", focus_contact=2, n_adjacent=2, decay_per_contact=0.55),
        background=Background(amplitude_uv=25.0, exponent=2.0, white_noise_uv=1.5),
        artifacts=Artifacts(
            pop_rate_per_minute=0.3,
            pop_amplitude_uv=600.0,
            pop_channels=("C9",),
            muscle_rate_per_minute=0.5,
            muscle_amplitude_uv=25.0,
            muscle_shafts=("C",),
        ),
        spike_polarity=-1,
        line_freq_hz=50.0,
        line_noise_uv=5.0,
        seed=1,
    ),
    "B": PatientProfile(
        name="B",
        sfreq=1024.0,
        shafts=(("H", 8), ("T", 6)),
        morphology="sharp_wave",
        spike_amplitude_uv=130.0,
        spike_rate_per_minute=2.0,
        spread=SpikeSpread(
            focus_shaft="H",
            focus_contact=3,
            n_adjacent=4,
            decay_per_contact=0.8,
            delay_seconds_per_contact=0.005,
            secondary_shaft="T",
            secondary_contact=2,
            secondary_gain=0.45,
            secondary_delay_seconds=0.025,
        ),
        background=Background(
            amplitude_uv=35.0, exponent=1.8, rhythm_hz=9.5, rhythm_uv=15.0, white_noise_uv=2.0, shaft_correlation=0.8
        ),
        artifacts=Artifacts(
            pop_rate_per_minute=1.0,
            pop_amplitude_uv=400.0,
            pop_tau_seconds=0.1,
            muscle_rate_per_minute=2.0,
            muscle_amplitude_uv=40.0,
            muscle_n_channels=3,
            muscle_duration_seconds=1.5,
            muscle_shafts=("T",),
        ),
        spike_polarity=1,
        line_freq_hz=60.0,
        line_noise_uv=12.0,
        seed=2,
    ),
    "C": PatientProfile(
        name="C",
        sfreq=4096.0,
        shafts=(("Am'", 5), ("Hp'", 5)),
        morphology="spike_wave",
        spike_amplitude_uv=300.0,
        spike_rate_per_minute=12.0,
        spread=SpikeSpread(
            focus_shaft="Hp'",
            focus_contact=2,
            n_adjacent=1,
            decay_per_contact=0.4,
            delay_seconds_per_contact=0.001,
            phase_reversal=True,
        ),
        background=Background(amplitude_uv=20.0, exponent=2.4, white_noise_uv=1.0, shaft_correlation=0.6),
        artifacts=Artifacts(
            pop_rate_per_minute=0.1,
            pop_amplitude_uv=900.0,
            pop_tau_seconds=0.25,
            muscle_rate_per_minute=0.2,
            muscle_amplitude_uv=20.0,
            muscle_n_channels=2,
        ),
        spike_polarity=-1,
        line_freq_hz=50.0,
        line_noise_uv=2.0,
        seed=3,
    ),
    "D": PatientProfile(
        name="D",
        sfreq=2000.0,
        shafts=(("X", 12), ("Y'", 8)),
        morphology="polyspike",
        spike_amplitude_uv=220.0,
        spike_rate_per_minute=4.0,
        spread=SpikeSpread(
            focus_shaft="X",
            focus_contact=6,
            n_adjacent=3,
            decay_per_contact=0.65,
            delay_seconds_per_contact=0.003,
            secondary_shaft="Y'",
            secondary_contact=4,
            secondary_gain=0.3,
            secondary_delay_seconds=0.015,
        ),
        background=Background(
            amplitude_uv=40.0, exponent=1.7, rhythm_hz=11.0, rhythm_uv=10.0, white_noise_uv=2.5, shaft_correlation=0.75
        ),
        artifacts=Artifacts(
            pop_rate_per_minute=0.6,
            pop_amplitude_uv=800.0,
            pop_channels=("Y'8", "X12"),
            muscle_rate_per_minute=1.0,
            muscle_amplitude_uv=60.0,
            muscle_n_channels=5,
            muscle_shafts=("X", "Y'"),
        ),
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


def benchmark_profile(sfreq: float = 32000.0, n_chans: int = 24, patient: str = "A") -> PatientProfile:
    """A default patient resampled and resized for benchmarks (e.g. 32 kHz, 24 channels)."""
    return with_n_channels(PATIENTS[patient], n_chans).with_(sfreq=float(sfreq))


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


def physical_range_uv(profile: PatientProfile) -> float:
    """A symmetric range (+/- this many uV) that holds the signal, events included, unclipped."""
    bg = profile.background
    art = profile.artifacts
    rms = math.hypot(1.3 * bg.amplitude_uv, bg.rhythm_uv, bg.white_noise_uv)
    events = max(
        profile.spike_amplitude_uv,
        art.pop_amplitude_uv if art.pop_rate_per_minute > 0 else 0.0,
        4 * art.muscle_amplitude_uv if art.muscle_rate_per_minute > 0 else 0.0,
    )
    peak = 1.6 * events + 7 * rms + 2 * profile.line_noise_uv
    magnitude = 10 ** math.floor(math.log10(peak))
    return math.ceil(peak / magnitude * 2) / 2 * magnitude
