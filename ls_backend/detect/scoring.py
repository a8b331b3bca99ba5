"""Every sample of a window store scored: per-sample, per-channel spike probabilities in bounded memory.

A :class:`DenseScorer` turns model-input windows ``[n, n_chans, n_times]`` into probabilities of the same shape:
:class:`ModelScorer` (a trained :class:`~ls_backend.model.estimator.SpikeDetector`) or :class:`TransientScorer`
(the classical detector, for a patient without labels). :func:`stream_probability` slides the scorer's windows over
the store's continuous signal at half a window's stride and keeps, for each sample, the probability from the window
where it lies most central (the centre half of each window), so a spike on one window's border is seen in the
middle of another; it reads ``block_windows`` windows of contiguous signal at a time, so memory does not grow with
the recording. :func:`detect_store` turns the stream into events (:class:`~ls_backend.detect.events.EventExtractor`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from converters.windows import WindowStore, window_starts
from ls_backend.active.transients import TransientDetector, robust_statistics

from .events import Block, Event, EventExtractor

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ls_backend.model.estimator import SpikeDetector

__all__ = [
    "Block",
    "DenseScorer",
    "ModelScorer",
    "TransientScorer",
    "detect_store",
    "stream_probability",
    "window_layout",
]

logger = logging.getLogger(__name__)

COLD_START_VERSION = "cold-start"
STATISTICS_WINDOWS = 2000  # windows spread over a store that the transient statistics are computed from


class DenseScorer(Protocol):
    """Per-sample, per-channel spike probability of windows of ``n_times`` samples at ``sfreq``."""

    sfreq: float
    n_times: int
    version: str

    def score(self, X: np.ndarray) -> np.ndarray:
        """Model input ``[n, n_chans, n_times]`` -> probability ``[n, n_chans, n_times]`` (NaN: absent channel)."""
        ...


class ModelScorer(DenseScorer):
    """A trained spike model's per-channel dense probability (:meth:`SpikeDetector.predict_channel_dense`), on
    windows as long as those it was trained on."""

    def __init__(self, model: SpikeDetector, version: str):
        if not model.is_fitted:
            raise ValueError("ModelScorer: the model is not fitted (train it or load a checkpoint)")
        self.model = model
        self.sfreq = float(model.sfreq)
        self.n_times = int(model.n_times_)
        self.version = version

    def score(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict_channel_dense(X)


class TransientScorer(DenseScorer):
    """The classical detector (:class:`~ls_backend.active.transients.TransientDetector`) per sample and channel.

    Each sample's smoothed transient gives the detector's two features as if the window peaked there (log
    transient, log transient over the window's median), z-scored with the channel's statistics over the recording
    (``centre`` and ``spread`` ``[n_chans, 2]``, :func:`~ls_backend.active.transients.robust_statistics` of the
    window features) and squashed like the detector's score. The maximum over a window's samples and channels is
    the detector's window score, so a threshold means the same for both (0.5: z = ``z_center``)."""

    def __init__(
        self,
        centre: np.ndarray,
        spread: np.ndarray,
        n_times: int,
        detector: TransientDetector,
        version: str = COLD_START_VERSION,
    ):
        if np.shape(centre) != np.shape(spread) or np.ndim(centre) != 2 or np.shape(centre)[1] != 2:
            raise ValueError(
                f"centre and spread: expected [n_chans, 2] each, got {np.shape(centre)}, {np.shape(spread)}"
            )
        self.centre = np.asarray(centre, np.float32)
        self.spread = np.asarray(spread, np.float32)
        self.n_times = int(n_times)
        self.detector = detector
        self.sfreq = float(detector.sfreq)
        self.version = version

    @classmethod
    def for_store(
        cls,
        store: WindowStore,
        max_windows: int = STATISTICS_WINDOWS,
        batch_windows: int = 256,
        **params: Any,
    ) -> TransientScorer:
        """The scorer of one recording: statistics from at most ``max_windows`` of its non-overlapping windows of
        ``store.window_samples``, spread evenly over it (all of them in a shorter store); ``params`` go to
        :class:`TransientDetector` (``sfreq``: the store's)."""
        if max_windows < 1:
            raise ValueError(f"max_windows must be positive, got {max_windows}")
        detector = TransientDetector(**{"sfreq": store.sfreq, **params})
        n_times = store.window_samples
        starts = window_starts(signal_length(store, n_times), n_times, n_times)
        if len(starts) > max_windows:
            starts = starts[np.unique(np.linspace(0, len(starts) - 1, max_windows).round().astype(np.int64))]
        features = []
        for first in range(0, len(starts), batch_windows):
            chosen = starts[first : first + batch_windows]
            features.append(detector.features(np.stack([read_signal(store, s, s + n_times) for s in chosen])))
        centre, spread = robust_statistics(np.concatenate(features))
        logger.info("transient statistics of %s from %d windows", store.path, len(starts))
        return cls(centre, spread, n_times, detector)

    def score(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float32)
        if X.ndim != 3 or X.shape[1] != len(self.centre):
            raise ValueError(f"X: expected [n, {len(self.centre)}, n_times], got {X.shape}")
        transient = self.detector.transient(X)  # float64 sums; float32 from here on (a block's maps are large)
        log_median = np.log(np.median(transient, axis=2, keepdims=True)).astype(np.float32)
        log_transient = np.log(transient).astype(np.float32)
        del transient
        centre, spread = self.centre[..., None], self.spread[..., None]
        peak_z = (log_transient - centre[:, 0]) / spread[:, 0]
        contrast_z = (log_transient - log_median - centre[:, 1]) / spread[:, 1]
        proba = self.detector.squash((peak_z + contrast_z) / 2).astype(np.float32, copy=False)
        lead = (X.shape[2] - proba.shape[2] + 1) // 2  # each transient sample is centred on its input span
        proba = np.pad(proba, [(0, 0), (0, 0), (lead, X.shape[2] - proba.shape[2] - lead)], mode="edge")
        absent = ~np.isfinite(X).all(axis=2) | ~np.isfinite(self.centre).all(axis=1)
        proba[absent] = np.nan
        return proba


def signal_length(store: WindowStore, n_times: int) -> int:
    """Samples of the store's signal; a clear error when they do not make one window of ``n_times``."""
    length = int(store.file["signal"].shape[1])
    if length < n_times:
        raise ValueError(
            f"{store.path}: {length} samples ({length / store.sfreq:.2f} s) are shorter than one scoring window of "
            f"{n_times} samples ({n_times / store.sfreq:.2f} s)"
        )
    return length


def read_signal(store: WindowStore, start: int, stop: int) -> np.ndarray:
    """Model input (robust-scaled) of samples ``start`` to ``stop`` of every channel, ``[n_chans, stop - start]``."""
    return store.file["signal"][:, start:stop] / store.channel_scale_uv[:, None]


def window_layout(n_samples: int, n_times: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``n_times`` over ``n_samples`` at half a window's stride, the last aligned to the end: their
    starts ``[K]`` and the bounds ``[K + 1]`` of the samples each window scores (window k: ``bounds[k]`` to
    ``bounds[k + 1]``, the samples closer to its centre than to any other's; the centre half inside)."""
    if n_times < 2 or n_samples < n_times:
        raise ValueError(f"cannot lay windows of {n_times} samples over {n_samples} samples")
    regular = np.arange(0, n_samples - n_times + 1, n_times // 2, dtype=np.int64)
    starts = regular if regular[-1] == n_samples - n_times else np.append(regular, n_samples - n_times)
    bounds = np.concatenate([[0], (starts[:-1] + starts[1:] + n_times) // 2, [n_samples]]).astype(np.int64)
    return starts, bounds


def stream_probability(
    store: WindowStore, scorer: DenseScorer, block_windows: int = 256, progress: bool = False
) -> Iterator[Block]:
    """The probability of every sample of ``store``, in consecutive :class:`Block` s of about ``block_windows``
    half windows (see the module docstring)."""
    if abs(scorer.sfreq - store.sfreq) > 1e-6 * store.sfreq:
        raise ValueError(
            f"{store.path}: sampled at {store.sfreq:g} Hz, but the scorer ({scorer.version or 'model'}) expects "
            f"{scorer.sfreq:g} Hz"
        )
    if block_windows < 1:
        raise ValueError(f"block_windows must be positive, got {block_windows}")
    n_times = scorer.n_times
    starts, bounds = window_layout(signal_length(store, n_times), n_times)
    firsts = range(0, len(starts), block_windows)
    for first in tqdm(firsts, disable=not progress, desc=f"scoring {store.path.name}", unit="block"):
        last = min(first + block_windows, len(starts))
        offset = int(starts[first])
        signal = read_signal(store, offset, int(starts[last - 1]) + n_times)
        X = np.stack([signal[:, s - offset : s - offset + n_times] for s in starts[first:last]])
        proba = scorer.score(X)
        if proba.shape != X.shape:
            raise ValueError(f"scorer {scorer.version!r} returned shape {proba.shape} for windows {X.shape}")
        low, high = int(bounds[first]), int(bounds[last])
        stitched = np.empty((store.n_chans, high - low), np.float32)
        for j, k in enumerate(range(first, last)):
            own = slice(int(bounds[k] - starts[k]), int(bounds[k + 1] - starts[k]))
            stitched[:, bounds[k] - low : bounds[k + 1] - low] = proba[j, :, own]
        yield Block(low, stitched, signal[:, low - offset : high - offset])


def detect_store(
    store: WindowStore,
    scorer: DenseScorer,
    threshold: float,
    block_windows: int = 256,
    progress: bool = False,
    **tuning: float,
) -> list[Event]:
    """The spike events of a whole store, in bounded memory (``tuning``: see
    :class:`~ls_backend.detect.events.EventExtractor`)."""
    extractor = EventExtractor(store.sfreq, store.ch_names, threshold, scorer.version, **tuning)
    events: list[Event] = []
    for block in stream_probability(store, scorer, block_windows, progress):
        events.extend(extractor.feed(block))
    events.extend(extractor.finish())
    logger.info("%s: %d events at threshold %g (%s)", store.path, len(events), threshold, scorer.version)
    return events
