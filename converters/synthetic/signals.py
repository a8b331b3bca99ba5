"""The signal of a synthetic recording, rendered chunk by chunk in bounded memory.

* The background (1/f noise, rhythm, line noise) is made at a low rate (sfreq / k, about 2 kHz) by IIR
  filters whose state is carried from block to block, then upsampled to the output rate by cubic
  interpolation; white amplifier noise is added at the output rate.
* Events (spikes and artifacts) are rendered as waveforms on the absolute sample grid and added where
  they overlap the chunk.

Every random draw is keyed by the seed and an absolute block or event index, so the samples do not
depend on the chunk size (up to float rounding).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy import signal

from .events import RenderedEvent, plan_events, render_event
from .profiles import (
    STREAM_LAYOUT,
    STREAM_LOW_RATE,
    STREAM_WARMUP,
    STREAM_WHITE,
    STREAM_WHITE_TABLE,
    PatientProfile,
)

logger = logging.getLogger(__name__)

LOW_RATE_TARGET_HZ = 2048.0  # the background is generated at sfreq / k, k = round(sfreq / this)
_LOW_BLOCK = 4096  # low-rate samples per noise block
_WHITE_BLOCK = 32768  # output samples per white-noise block
_WHITE_TABLE = 1 << 20  # white noise is read from a table at random offsets (fast, still white)
_WARMUP_SECONDS = 10.0  # filters run this long before t=0 so the recording starts in steady state


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
        mix[i0 : i0 + n, i0 : i0 + n] = np.linalg.cholesky(cov + 1e-9 * np.eye(n))
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
        rng = np.random.default_rng([profile.seed, STREAM_LAYOUT])
        self.mix = _shaft_mixing(profile).astype(np.float32)
        self.bg_gain = (bg.amplitude_uv * rng.uniform(0.7, 1.3, self.n_chans)).astype(np.float32)
        shaft_of = np.repeat(np.arange(self.n_shafts), [n for _, n in profile.shafts])
        self.rhythm_gain = (
            bg.rhythm_uv * rng.uniform(0.2, 1.0, self.n_shafts)[shaft_of] * rng.uniform(0.7, 1.0, self.n_chans)
        ).astype(np.float32)
        self.shaft_of = shaft_of
        self.line_gain = (profile.line_noise_uv * rng.uniform(0.5, 1.5, self.n_chans)).astype(np.float32)
        self.line_phase = float(rng.uniform(0, 2 * np.pi))
        self._init_state()
        self.buf: np.ndarray = np.zeros((self.n_chans, 0), np.float32)
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
        rng = np.random.default_rng([self.profile.seed, STREAM_WARMUP])
        self.zi_pink = np.zeros((self.pink.shape[0], self.n_chans, 2))
        self.zi_rhythm = None if self.rhythm is None else np.zeros((self.rhythm.shape[0], self.n_shafts, 2))
        for _ in range(math.ceil(_WARMUP_SECONDS * self.rate_hz / _LOW_BLOCK)):
            noise = rng.standard_normal((self.n_chans + self.n_shafts, _LOW_BLOCK))
            _, self.zi_pink = signal.sosfilt(self.pink, noise[: self.n_chans], axis=-1, zi=self.zi_pink)
            if self.rhythm is not None:
                _, self.zi_rhythm = signal.sosfilt(self.rhythm, noise[self.n_chans :], axis=-1, zi=self.zi_rhythm)

    def _block(self) -> np.ndarray:
        """The next block of low-rate background (float32 microvolts)."""
        rng = np.random.default_rng([self.profile.seed, STREAM_LOW_RATE, self.next_block])
        j0 = self.next_block * _LOW_BLOCK - 1
        self.next_block += 1
        pink, self.zi_pink = signal.sosfilt(
            self.pink, rng.standard_normal((self.n_chans, _LOW_BLOCK)), axis=-1, zi=self.zi_pink
        )
        out = self.mix @ pink.astype(np.float32)
        out *= self.bg_gain[:, None]
        if self.rhythm is not None:
            rhythm, self.zi_rhythm = signal.sosfilt(
                self.rhythm, rng.standard_normal((self.n_shafts, _LOW_BLOCK)), axis=-1, zi=self.zi_rhythm
            )
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
        self.buf = buf[:, j0 - self.buf_start :]
        self.buf_start = j0
        return self.buf[:, : j1 - j0]


def _cubic_weights(k: int) -> np.ndarray:
    """Catmull-Rom weights [4, k] for output phases m/k between samples 1 and 2 of 4."""
    t = np.arange(k) / k
    return np.stack(
        [
            (-(t**3) + 2 * t**2 - t) / 2,
            (3 * t**3 - 5 * t**2 + 2) / 2,
            (-3 * t**3 + 4 * t**2 + t) / 2,
            (t**3 - t**2) / 2,
        ]
    ).astype(np.float32)


class _Generator:
    """Renders [s0, s1) sample ranges in increasing order."""

    def __init__(self, profile: PatientProfile, duration_seconds: float) -> None:
        self.profile = profile
        self.sfreq = float(profile.sfreq)
        self.n_times = round(duration_seconds * self.sfreq)
        self.low = _LowRate(profile)
        self.weights = _cubic_weights(self.low.k)
        self.plans = plan_events(profile, duration_seconds)
        self.next_plan = 0
        self.active: list[RenderedEvent] = []
        table_rng = np.random.default_rng([profile.seed, STREAM_WHITE_TABLE])
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
        taps = np.stack([x[:, i : i + m] for i in range(4)], axis=-1).reshape(-1, 4)
        full = np.matmul(taps, self.weights).reshape(self.low.n_chans, m * k)
        return np.ascontiguousarray(full[:, s0 - ja * k : s1 - ja * k])

    def _add_white(self, out: np.ndarray, s0: int, s1: int) -> None:
        if self.profile.background.white_noise_uv <= 0:
            return
        n_chans = out.shape[0]
        for block in range(s0 // _WHITE_BLOCK, (s1 - 1) // _WHITE_BLOCK + 1):
            b0 = block * _WHITE_BLOCK
            a, b = max(s0, b0), min(s1, b0 + _WHITE_BLOCK)
            offsets = np.random.default_rng([self.profile.seed, STREAM_WHITE, block]).integers(
                0, _WHITE_TABLE - _WHITE_BLOCK, n_chans
            )
            for c in range(n_chans):
                o = int(offsets[c]) + a - b0
                out[c, a - s0 : b - s0] += self.white[o : o + b - a]

    def _add_events(self, out: np.ndarray, s0: int, s1: int) -> None:
        while self.next_plan < len(self.plans) and self.plans[self.next_plan].start_seconds * self.sfreq < s1:
            self.active.append(render_event(self.plans[self.next_plan], self.sfreq))
            self.next_plan += 1
        for ev in self.active:
            for c, start, row in zip(ev.channels, ev.starts, ev.rows, strict=True):
                a, b = max(s0, start), min(s1, start + row.size)
                if a < b:
                    out[c, a - s0 : b - s0] += row[a - start : b - start]
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


def iter_chunks(profile: PatientProfile, duration_seconds: float, chunk_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """Yield the recording as float32 microvolt arrays ``[n_chans, n_samples]``, in time order."""
    gen = _Generator(profile, duration_seconds)
    step = max(1, round(chunk_seconds * gen.sfreq))
    logger.debug(
        "patient %s: %d samples at %g Hz in chunks of %d (background at %g Hz)",
        profile.name,
        gen.n_times,
        gen.sfreq,
        step,
        gen.low.rate_hz,
    )
    for s0 in range(0, gen.n_times, step):
        yield gen.render(s0, min(s0 + step, gen.n_times))


def generate(profile: PatientProfile, duration_seconds: float, chunk_seconds: float = 10.0) -> np.ndarray:
    """The whole recording in memory (short durations only): float32 microvolts [n_chans, n_times]."""
    chunks = list(iter_chunks(profile, duration_seconds, chunk_seconds))
    if not chunks:
        return np.zeros((profile.n_chans, 0), np.float32)
    return np.concatenate(chunks, axis=1)
