"""Events of a synthetic recording (spikes, artifacts) and their waveforms on the sample grid.

Events come from one Poisson process per kind (deterministic given the seed); each event draws its
shape from its own random stream, so a longer recording extends the list without changing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

from .profiles import EVENT_STREAMS, SPIKE_KINDS, PatientProfile


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


_Component = tuple[float, float, float, float]  # (time from peak, amplitude, sigma left, sigma right)


@dataclass(frozen=True)
class EventPlan:
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
        for plan in plan_events(profile, duration_seconds)
    ]


def plan_events(profile: PatientProfile, duration_seconds: float) -> list[EventPlan]:
    rates = {
        profile.morphology: profile.spike_rate_per_minute,
        "artifact_pop": profile.artifacts.pop_rate_per_minute,
        "artifact_muscle": profile.artifacts.muscle_rate_per_minute,
    }
    builders = {"artifact_pop": _plan_pop, "artifact_muscle": _plan_muscle}
    plans: list[EventPlan] = []
    for kind, rate in rates.items():
        build = builders.get(kind, _plan_spike)
        dead_seconds = 0.8 if kind in SPIKE_KINDS else 0.5
        for i, t in enumerate(_poisson_times(profile.seed, kind, rate, duration_seconds, dead_seconds)):
            plan = build(profile, kind, i, t)
            if plan.start_seconds >= 0 and plan.end_seconds <= duration_seconds:
                plans.append(plan)
    plans.sort(key=lambda p: (p.start_seconds, p.kind, p.index))
    return plans


def _poisson_times(
    seed: int, kind: str, rate_per_minute: float, duration_seconds: float, dead_seconds: float
) -> list[float]:
    """Event times of a Poisson process with a dead time; a longer duration extends the list."""
    if rate_per_minute <= 0:
        return []
    rng = np.random.default_rng([seed, EVENT_STREAMS[kind]])
    mean_gap = max(60.0 / rate_per_minute - dead_seconds, 1e-3)
    times: list[float] = []
    t = 0.0
    while True:
        t += dead_seconds + rng.exponential(mean_gap)
        if t >= duration_seconds:
            return times
        times.append(t)


def _event_rng(profile: PatientProfile, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([profile.seed, EVENT_STREAMS[kind], index + 1])


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
        sites.append(
            (spread.secondary_shaft, spread.secondary_contact, spread.secondary_gain, spread.secondary_delay_seconds)
        )
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


def _plan_spike(profile: PatientProfile, kind: str, index: int, t: float) -> EventPlan:
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
    return EventPlan(
        index=index,
        kind=kind,
        start_seconds=t + before,
        end_seconds=t + after + max(delays),
        peak_seconds=t,
        amplitude_uv=amplitude,
        channels=tuple(channels),
        gains=tuple(gains),
        delays_seconds=tuple(delays),
        components=comps,
    )


def _plan_pop(profile: PatientProfile, kind: str, index: int, t: float) -> EventPlan:
    rng = _event_rng(profile, kind, index)
    names = profile.ch_names
    pops = profile.artifacts.pop_channels
    channel = names.index(pops[int(rng.integers(len(pops)))]) if pops else int(rng.integers(len(names)))
    tau = profile.artifacts.pop_tau_seconds * float(rng.uniform(0.6, 1.5))
    amplitude = profile.artifacts.pop_amplitude_uv * _amplitude_jitter(rng) * float(rng.choice([-1, 1]))
    rise = _pop_rise_seconds(profile.sfreq)
    peak = rise * math.log1p(tau / rise)
    return EventPlan(
        index=index,
        kind=kind,
        start_seconds=t,
        end_seconds=t + 5 * tau,
        peak_seconds=t + peak,
        amplitude_uv=abs(amplitude),
        channels=(channel,),
        gains=(amplitude,),
        delays_seconds=(0.0,),
        tau_seconds=tau,
    )


def _pop_rise_seconds(sfreq: float) -> float:
    return max(0.0003, 0.5 / sfreq)


def _plan_muscle(profile: PatientProfile, kind: str, index: int, t: float) -> EventPlan:
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
    return EventPlan(
        index=index,
        kind=kind,
        start_seconds=t,
        end_seconds=t + duration,
        peak_seconds=t + duration / 2,
        amplitude_uv=amplitude,
        channels=channels,
        gains=gains,
        delays_seconds=(0.0,) * len(channels),
        seed=(profile.seed, EVENT_STREAMS[kind], index + 1, 7),
    )


@dataclass
class RenderedEvent:
    """An event's waveform on the absolute sample grid: ``rows[i]`` starts at ``starts[i]``."""

    channels: tuple[int, ...]
    starts: list[int]
    rows: list[np.ndarray]
    stop: int


def render_event(plan: EventPlan, sfreq: float) -> RenderedEvent:
    if plan.kind == "artifact_pop":
        return _render_pop(plan, sfreq)
    if plan.kind == "artifact_muscle":
        return _render_muscle(plan, sfreq)
    return _render_spike(plan, sfreq)


def _render_spike(plan: EventPlan, sfreq: float) -> RenderedEvent:
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
    return RenderedEvent(plan.channels, [start + s for s in shifts], rows, stop + max(shifts))


def _render_pop(plan: EventPlan, sfreq: float) -> RenderedEvent:
    start = math.ceil(plan.start_seconds * sfreq)
    stop = math.ceil(plan.end_seconds * sfreq) + 1
    t = np.arange(start, stop) / sfreq - plan.start_seconds
    rise = _pop_rise_seconds(sfreq)
    wave = -np.expm1(-t / rise) * np.exp(-t / plan.tau_seconds)
    wave *= plan.gains[0] / max(float(wave.max()), 1e-12)
    return RenderedEvent(plan.channels, [start], [wave.astype(np.float32)], stop)


def _render_muscle(plan: EventPlan, sfreq: float) -> RenderedEvent:
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
    rows = [
        (plan.amplitude_uv * g * envelope * row).astype(np.float32) for g, row in zip(plan.gains, mixed, strict=True)
    ]
    return RenderedEvent(plan.channels, [start] * len(rows), rows, stop)
