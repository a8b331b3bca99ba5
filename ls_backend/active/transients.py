"""A classical interictal spike detector: the score that orders windows before any label exists.

For each channel of each window (robust-scaled signal at ``sfreq``, as the window store gives it) a transient
signal is averaged over a sliding window of about a spike's length (``transient_seconds``, 70 ms):

* ``measure="energy"`` (default): the nonlinear (Teager) energy ``x[t]^2 - x[t-1] x[t+1]``, amplitude times
  frequency, which is what a spike has and slow waves or steady fast activity have less of;
* ``measure="line_length"``: ``|x[t+1] - x[t]|``.

Two features per channel: the log of its peak over the window, and the log of the peak over the window's median
(how much the transient stands out from its own background). Each is turned into a robust z-score against the same
channel across the whole recording (median and 1.4826 x MAD over windows), so a channel that is always busy does not
dominate; a channel's z is the mean of the two, the window's z is the maximum over channels (or the mean over its
``top_channels`` most transient ones; channels with NaN, i.e. absent, are skipped), and the score is
``sigmoid((z - z_center) / z_scale)`` in [0, 1]. ``top_channels=3`` favours a spike's field, which reaches the
neighbouring contacts where an electrode pop stays on one: on synthetic patient D eight of its ten best windows were
spikes instead of none, yet the replay's models learned less from the first labels (fewer pops labeled as such), so
the maximum stays the default (``docs/benchmarks.md``, "Searching for the first spikes").

On the synthetic patients (``converters.synthetic``), energy separated spike windows from the rest better than line
length (AUC 0.96-1.0 for patients A, C, D; 0.79 for B, low sharp waves in alpha with many artifacts).

Artifacts (electrode pops, muscle) also score high: this detector finds transients, the model learns which are spikes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from converters.windows import WindowStore

logger = logging.getLogger(__name__)

N_FEATURES = 2  # log peak, log peak-to-median of the transient signal
Statistics = tuple[np.ndarray, np.ndarray]  # per-channel centre and spread of the features, [n_chans, 2] each
MEASURES = ("energy", "line_length")


class TransientDetector:
    """Line length + nonlinear energy detector (see the module docstring). Parameters only in ``__init__``."""

    def __init__(
        self,
        sfreq: float = 256.0,
        transient_seconds: float = 0.07,
        measure: str = "energy",
        z_center: float = 4.0,
        z_scale: float = 1.0,
        top_channels: int = 1,
    ):
        self.sfreq = sfreq
        self.transient_seconds = transient_seconds
        self.measure = measure
        self.z_center = z_center
        self.z_scale = z_scale
        self.top_channels = top_channels

    @property
    def transient_samples(self) -> int:
        return max(2, round(self.transient_seconds * self.sfreq))

    def transient(self, windows: np.ndarray) -> np.ndarray:
        """The transient signal averaged over ``transient_samples`` (at least 1e-9; NaN where the input is) of windows
        ``[n, n_chans, n_times]``: ``[n, n_chans, n_times - transient_samples - k]`` (valid part only; k = 1 for
        energy, 0 for line length), each sample centred on its span of input samples."""
        x = np.asarray(windows, np.float32)
        if x.ndim != 3:
            raise ValueError(f"windows: expected shape [n, n_chans, n_times], got {x.shape}")
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {self.measure!r}")
        w = min(self.transient_samples, x.shape[2] - 2)
        if w < 1:
            raise ValueError(f"windows: {x.shape[2]} samples are too few for the detector")
        if self.measure == "energy":
            transient = x[..., 1:-1] ** 2 - x[..., :-2] * x[..., 2:]
        else:
            transient = np.abs(np.diff(x, axis=2))
        return np.maximum(_moving_sum(transient, w) / w, 1e-9)  # Teager energy can dip below 0

    def features(self, windows: np.ndarray) -> np.ndarray:
        """Per-channel features ``[n, n_chans, 2]`` (log peak, log peak-to-median) of windows ``[n, n_chans, n_times]``;
        NaN for absent channels. Small: this is what a pass over a window store keeps."""
        smooth = self.transient(windows)
        peak = np.log(smooth.max(axis=2))
        return np.stack([peak, peak - np.log(np.median(smooth, axis=2))], axis=2).astype(np.float32)

    def score_features(self, features: np.ndarray, statistics: Statistics | None = None) -> np.ndarray:
        """Scores [n] in [0, 1] from the features of every window of one recording (robust z per channel), or of
        some windows against the recording's ``statistics`` (:func:`robust_statistics` of its windows' features)."""
        return self.squash(self.window_z(features, statistics))

    def squash(self, z: np.ndarray) -> np.ndarray:
        """A robust z (see :meth:`window_z`) as a score in [0, 1]: ``sigmoid((z - z_center) / z_scale)``."""
        with np.errstate(over="ignore"):  # exp overflows to inf for a z far below the centre: a score of 0
            return 1.0 / (1.0 + np.exp(-(np.asarray(z) - self.z_center) / self.z_scale))

    def window_z(self, features: np.ndarray, statistics: Statistics | None = None) -> np.ndarray:
        """Robust z of each window: the mean over its ``top_channels`` most transient present channels (fewer where
        it has fewer; [n]; -inf where every channel is absent), against ``statistics`` (centre, spread; default:
        :func:`robust_statistics` of ``features`` themselves)."""
        features = check_features(features)
        if self.top_channels < 1:
            raise ValueError(f"top_channels must be at least 1, got {self.top_channels}")
        if len(features) == 0:
            return np.zeros(0)
        centre, spread = robust_statistics(features) if statistics is None else statistics
        channel_z = ((features - centre) / spread).mean(axis=2)
        channel_z = np.where(np.isnan(channel_z), -np.inf, channel_z)
        top = -np.sort(-channel_z, axis=1)[:, : self.top_channels]
        present = np.isfinite(top)
        mean = np.where(present, top, 0.0).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
        return np.where(present[:, 0], mean, -np.inf)

    def score(self, windows: np.ndarray) -> np.ndarray:
        """Scores [n] of windows ``[n, n_chans, n_times]`` that together stand for the recording."""
        return self.score_features(self.features(windows))

    def score_batches(
        self, batches: Iterable[np.ndarray], total: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Scores of windows arriving in batches (only the small features are kept between batches)."""
        features = [
            self.features(b) for b in tqdm(batches, total=total, disable=not progress, desc="detector", unit="batch")
        ]
        if not features:
            return np.zeros(0)
        return self.score_features(np.concatenate(features))


def check_features(features: np.ndarray) -> np.ndarray:
    """``features`` as float64 ``[n, n_chans, 2]`` (see :meth:`TransientDetector.features`); a clear error otherwise."""
    features = np.asarray(features, np.float64)
    if features.ndim != 3 or features.shape[2] != N_FEATURES:
        raise ValueError(f"features: expected shape [n, n_chans, {N_FEATURES}], got {features.shape}")
    return features


def robust_statistics(features: np.ndarray) -> Statistics:
    """Per-channel centre (median) and spread (1.4826 x MAD, 1 where 0) of each feature over the windows of one
    recording, ``[n_chans, 2]`` each; NaN for a channel absent from every window."""
    features = check_features(features)
    with warnings.catch_warnings():  # a channel absent from every window has no statistics: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmedian(features, axis=0)
        spread = 1.4826 * np.nanmedian(np.abs(features - centre), axis=0)
    return centre, np.where(spread > 0, spread, 1.0)


def cold_start_arrays(
    features: np.ndarray, detector: TransientDetector | None = None, statistics: Statistics | None = None
) -> dict[str, np.ndarray]:
    """What the cold-start strategy reads, from the :meth:`TransientDetector.features` of one recording's windows
    (``statistics``: their :func:`robust_statistics`, when the caller has them): ``detector_score`` [n] and diversity
    ``embeddings`` (the flattened per-channel features, absent channels 0)."""
    features = np.asarray(features)
    detector = detector or TransientDetector()
    return {"detector_score": detector.score_features(features, statistics), "embeddings": flat_features(features)}


def flat_features(features: np.ndarray) -> np.ndarray:
    """Per-channel features ``[n, n_chans, 2]`` as one row per window (absent channels 0): the detector's space."""
    features = np.asarray(features)
    return np.nan_to_num(features.reshape(len(features), -1))


def _moving_sum(x: np.ndarray, width: int) -> np.ndarray:
    """Sums of ``width`` consecutive samples along the last axis (valid part only), in float64 for accuracy."""
    c = np.cumsum(x, axis=-1, dtype=np.float64)
    return np.concatenate([c[..., width - 1 : width], c[..., width:] - c[..., :-width]], axis=-1)


def detector_scores(store: WindowStore, batch_size: int = 256, progress: bool = False, **params: Any) -> np.ndarray:
    """Detector score of every window of a :class:`converters.windows.WindowStore`, in ``store.ids`` order.

    Reads the store ``batch_size`` windows at a time; ``params`` go to :class:`TransientDetector` (``sfreq`` defaults
    to the store's).
    """
    detector = TransientDetector(**{"sfreq": store.sfreq, **params})
    n_batches = -(-len(store) // batch_size)
    batches = (windows for _, windows in store.iter_batches(batch_size=batch_size))
    scores = detector.score_batches(batches, total=n_batches, progress=progress)
    logger.info("detector: %d windows of %s, %d score above 0.5", len(scores), store.path, int(np.sum(scores > 0.5)))
    return scores
