"""Scoring every sample of a window store: the model's per-channel dense probability, the classical detector per
sample, the stitched stream over the whole signal (every sample from the centre of a window), and detection on a
synthetic patient (its truth recovered) in memory that does not grow with the recording."""

import dataclasses
import tracemalloc

import numpy as np
import pytest
import torch
from model_helpers import TINY, toy_windows

from converters import synthetic
from converters.convert import convert_recording
from converters.windows import StoreWriter, WindowParams, WindowStore, window_ids, window_starts
from converters.windowset import windowset_from_store
from ls_backend.active.transients import TransientDetector
from ls_backend.detect.scoring import (
    ModelScorer,
    TransientScorer,
    detect_store,
    stream_probability,
    window_layout,
)
from ls_backend.model.estimator import SpikeDetector
from ls_backend.model.resnet1d import smooth_max

SFREQ = 256.0


def write_store(path, signal_uv: np.ndarray, window_samples: int = 512, sfreq: float = SFREQ, scale: float = 1.0):
    """A window store of ``signal_uv`` ``[n_chans, n_times]`` (every window, no overlap)."""
    n_chans, n_times = signal_uv.shape
    writer = StoreWriter(path, n_chans, n_times)
    writer.append(signal_uv.astype(np.float32))
    starts = window_starts(n_times, window_samples, window_samples)
    writer.write_index(window_ids("0" * 64, starts, sfreq, window_samples), starts)
    writer.write_annotations([])
    writer.set_attrs(
        sfreq=sfreq,
        ch_names=[f"C{i}-C{i + 1}" for i in range(n_chans)],
        channel_scale_uv=np.full(n_chans, scale, np.float32),
        window_samples=window_samples,
        stride_samples=window_samples,
        provenance={},
    )
    return writer.commit()


# ------------------------------------------------------------------------------------------- the model's map


def test_channel_dense_probability_agrees_with_predict_dense_and_predict_proba():
    X, y = toy_windows(n=12, n_chans=5, n_times=64)
    X[2, 1] = np.nan  # an absent channel
    X[5, :] = np.nan  # a window without any channel
    model = SpikeDetector(**TINY).fit(X, y)
    per_channel = model.predict_channel_dense(X)
    assert per_channel.shape == X.shape and per_channel.dtype == np.float32
    assert np.isnan(per_channel[2, 1]).all() and np.isnan(per_channel[5]).all()
    assert np.isfinite(np.delete(per_channel, 5, axis=0)[np.delete(np.isfinite(X).all(axis=2), 5, axis=0)]).all()
    dense, channel = model.predict_dense(X)
    present = np.isfinite(X).all(axis=2).any(axis=1)
    # the window's map: the channels' maps, each capped by its channel's probability, and by the window's
    proba = model.predict_proba(X)
    capped = np.minimum(per_channel, np.minimum(channel, proba[:, None])[..., None])
    np.testing.assert_allclose(np.nanmax(capped[present], axis=1), dense[present], rtol=1e-5, atol=1e-7)
    # the channel probability is the smooth maximum over time of the channel's (uncapped) dense logits
    logits = torch.from_numpy(np.log(per_channel) - np.log1p(-per_channel))
    from_dense = torch.sigmoid(smooth_max(logits, model.sharpness)).numpy()
    np.testing.assert_allclose(from_dense, channel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.nanmax(from_dense[present], axis=1), proba[present], rtol=1e-4)
    assert "channel_dense" not in model._run(X)  # the default path keeps no [n, C, T] map


def test_model_scorer_takes_the_model_window_and_checks_the_rate(tmp_path):
    X, y = toy_windows(n=12, n_chans=3, n_times=64)
    model = SpikeDetector(**TINY).fit(X, y)
    scorer = ModelScorer(model, "v7")
    assert (scorer.n_times, scorer.sfreq, scorer.version) == (64, 256.0, "v7")
    np.testing.assert_array_equal(scorer.score(X), model.predict_channel_dense(X))
    with pytest.raises(ValueError, match="not fitted"):
        ModelScorer(SpikeDetector(**TINY), "v0")
    store = write_store(tmp_path / "fast.h5", np.zeros((3, 4096)), sfreq=512.0)
    with WindowStore(store) as opened, pytest.raises(ValueError, match=r"fast.h5: sampled at 512 Hz.*expects 256 Hz"):
        next(stream_probability(opened, scorer))


# ------------------------------------------------------------------------------------------- stitching


def test_window_layout_scores_every_sample_from_the_centre_half_of_a_window():
    starts, bounds = window_layout(1000, 64)
    assert starts[-1] == 1000 - 64 and np.all(np.diff(starts[:-1]) == 32)
    assert bounds[0] == 0 and bounds[-1] == 1000 and np.all(np.diff(bounds) > 0)
    # window k owns bounds[k] to bounds[k + 1]: the centre half, but for the first and last windows (which also own
    # the recording's ends) and the last regular one (next to the off-grid last window)
    regular = slice(1, len(starts) - 2)
    np.testing.assert_array_equal(bounds[regular] - starts[regular], 16)
    np.testing.assert_array_equal(bounds[2 : len(starts) - 1] - starts[regular], 48)
    assert np.all(bounds[:-1] >= starts) and np.all(bounds[1:] <= starts + 64)
    starts, bounds = window_layout(64 * 5, 64)  # a whole number of half windows: no extra window
    assert list(starts) == [0, 32, 64, 96, 128, 160, 192, 224, 256]
    with pytest.raises(ValueError, match="cannot lay windows of 64 samples over 50"):
        window_layout(50, 64)


class BlindBorderScorer:
    """A stand-in for a model: probability 1 within 8 samples of a deflection of at least 5, on its channel; blind
    (0) in the outer quarters of every window, where a real model lacks context."""

    sfreq = SFREQ
    n_times = 64
    version = "blind-borders"

    def score(self, X: np.ndarray) -> np.ndarray:
        return self.visible(X) * self.centre_mask()

    @staticmethod
    def visible(X: np.ndarray) -> np.ndarray:
        hits = (np.abs(X) >= 5).astype(np.float32)
        near = np.zeros_like(hits)
        for shift in range(-8, 9):
            near = np.maximum(near, np.roll(hits, shift, axis=-1))
        return np.where(np.isfinite(X).all(axis=-1, keepdims=True), near, np.nan)

    def centre_mask(self) -> np.ndarray:
        mask = np.zeros(self.n_times, np.float32)
        mask[self.n_times // 4 : 3 * self.n_times // 4] = 1
        return mask


def spiky_signal(n_chans: int, n_times: int, peaks: list[tuple[int, int]], seed: int = 0) -> np.ndarray:
    """Small noise with a deflection of 10 (and 6 either side) at each (channel, sample) of ``peaks``."""
    signal = 0.5 * np.random.default_rng(seed).standard_normal((n_chans, n_times))
    for channel, peak in peaks:
        signal[channel, peak - 1 : peak + 2] += [6.0, -10.0, 6.0]
    return signal


# spikes on window borders (multiples of 32: where one window starts and another is centred), on the borders of
# the centre halves (16 + multiples of 32), near the start, and in the last window (off the grid: 936 to 1000)
BORDER_PEAKS = [(0, 30), (1, 64), (2, 144), (0, 240), (1, 400), (2, 400), (0, 528), (1, 976)]


def test_the_stream_scores_every_sample_from_a_window_centre(tmp_path):
    signal = spiky_signal(3, 1000, BORDER_PEAKS)
    with WindowStore(write_store(tmp_path / "s.h5", signal, window_samples=64)) as store:
        for block_windows in (1, 3, 256):
            blocks = list(stream_probability(store, BlindBorderScorer(), block_windows=block_windows))
            assert [b.start_sample for b in blocks] == list(np.cumsum([0] + [len(b) for b in blocks[:-1]]))
            proba = np.concatenate([b.proba for b in blocks], axis=1)
            np.testing.assert_array_equal(np.concatenate([b.signal for b in blocks], axis=1), signal.astype(np.float32))
            # the blind borders never show: every sample is scored as if the scorer saw the whole signal (except
            # within a quarter window of the recording's ends, where no window has it in its centre half)
            inside = slice(16, 1000 - 16)
            np.testing.assert_array_equal(proba[:, inside], BlindBorderScorer.visible(signal[None])[0][:, inside])
        events = detect_store(store, BlindBorderScorer(), 0.5, block_windows=2)
    peaks = sorted({peak for _, peak in BORDER_PEAKS})
    assert [round(e.peak * SFREQ) for e in events] == peaks  # each spike once, at its true peak
    assert [e.peak_channel for e in events if e.peak == 400 / SFREQ] == ["C1-C2"]
    assert [set(e.channels) for e in events if e.peak == 400 / SFREQ] == [{"C1-C2", "C2-C3"}]
    assert {e.model_version for e in events} == {"blind-borders"}


def test_the_stream_checks_the_store(tmp_path):
    with WindowStore(write_store(tmp_path / "short.h5", np.zeros((2, 40)), window_samples=32)) as store:
        with pytest.raises(ValueError, match=r"short.h5: 40 samples \(0.16 s\) are shorter than one scoring window"):
            next(stream_probability(store, BlindBorderScorer()))
        with pytest.raises(ValueError, match="block_windows must be positive"):
            next(stream_probability(store, BlindBorderScorer(), block_windows=0))


# ------------------------------------------------------------------------------------------- the classical detector


def test_the_transient_scorer_peaks_at_the_detector_window_score(tmp_path):
    rng = np.random.default_rng(0)
    signal = 30 * rng.standard_normal((4, 60 * 512))
    for k in range(0, 60, 6):  # a spike in every sixth window
        signal[k % 4, k * 512 + 200 : k * 512 + 206] += 300 * np.hanning(6)
    with WindowStore(write_store(tmp_path / "t.h5", signal, scale=30.0)) as store:
        scorer = TransientScorer.for_store(store)
        windows = store.read_rows(np.arange(len(store)))
        sampled = TransientScorer.for_store(store, max_windows=20)  # statistics from a third of the windows
    assert (scorer.n_times, scorer.sfreq, scorer.version) == (512, SFREQ, "cold-start")
    proba = scorer.score(windows)
    assert proba.shape == windows.shape and np.nanmin(proba) >= 0 and np.nanmax(proba) <= 1
    detector = TransientDetector(sfreq=SFREQ).score(windows)
    np.testing.assert_allclose(proba.max(axis=(1, 2)), detector, rtol=1e-4, atol=1e-6)  # the same 0.5
    assert np.flatnonzero(detector > 0.5).tolist() == list(range(0, 60, 6))
    peak_sample = proba[::6].max(axis=1).argmax(axis=1)
    assert np.all(np.abs(peak_sample - 203) <= 10)  # on the spike (the transient is smoothed over 70 ms)
    np.testing.assert_allclose(sampled.centre, scorer.centre, atol=0.3)
    windows[0, 1] = np.nan
    assert np.isnan(scorer.score(windows[:1])[0, 1]).all() and np.isfinite(scorer.score(windows[:1])[0, 0]).all()


# ------------------------------------------------------------------------------------------- a synthetic patient


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """A small model trained on 4 minutes of synthetic patient A (1 s windows), and a 2-minute store of the same
    patient drawn with another seed (other spikes, other background), with its true spikes."""
    tmp = tmp_path_factory.mktemp("patient")
    profile = synthetic.PATIENTS["A"]
    train_edf = synthetic.write_edf(tmp / "train.edf", profile, 240)
    convert_recording(train_edf, tmp / "train.h5", window_params=WindowParams(1.0))
    with WindowStore(tmp / "train.h5") as store:
        ws = windowset_from_store(store, "A")
    model = SpikeDetector(epochs=6, samples_per_epoch=256, seed=0).fit(ws.X, ws.y, dense_targets=ws.y_dense)
    other = dataclasses.replace(profile, seed=profile.seed + 1)
    convert_recording(synthetic.write_edf(tmp / "test.edf", other, 120), tmp / "test.h5")
    truth = [e for e in synthetic.make_events(other, 120) if e.is_spike]
    return model, tmp / "test.h5", truth


def recall(events, truth, tolerance_seconds: float = 0.1) -> float:
    """Fraction of true spikes with an event peaking within ``tolerance_seconds`` on one of the spike's channels."""
    found = [
        any(abs(e.peak - spike.peak_seconds) <= tolerance_seconds and involves(e, spike) for e in events)
        for spike in truth
    ]
    return float(np.mean(found))


def involves(event, spike) -> bool:
    """Whether a detected event lists a bipolar channel made with one of the spike's contacts."""
    return any(contact in name.split("-") for name in event.channels for contact in spike.channels)


@pytest.mark.slow
def test_detection_with_a_trained_model_recovers_the_synthetic_spikes(patient):
    model, path, truth = patient
    assert len(truth) >= 8
    with WindowStore(path) as store:
        events = detect_store(store, ModelScorer(model, "v3"), 0.5, block_windows=32)
        cold = detect_store(store, TransientScorer.for_store(store), 0.5)
    assert recall(events, truth) >= 0.9
    assert len(events) <= 1.5 * len(truth)  # few false detections
    assert all(e.model_version == "v3" and e.peak_channel == next(iter(e.channels)) for e in events)
    assert all(e.onset <= e.peak < e.onset + e.duration for e in events)
    assert recall(cold, truth) >= 0.8  # the classical detector finds most of them too


def test_detection_memory_does_not_grow_with_the_recording(tmp_path):
    def traced_peak(minutes: int) -> int:
        n_times = int(minutes * 60 * SFREQ)
        peaks = [(k % 6, int(s)) for k, s in enumerate(range(1000, n_times - 1000, 2000))]
        path = write_store(tmp_path / f"{minutes}.h5", 20 * spiky_signal(6, n_times, peaks), scale=20.0)
        with WindowStore(path) as store:
            scorer = TransientScorer.for_store(store)
            tracemalloc.start()
            try:
                events = detect_store(store, scorer, 0.5, block_windows=16)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert len(events) >= 0.9 * len(peaks)
        return peak

    short, long = traced_peak(2), traced_peak(8)
    assert long < 1.15 * short, (short, long)
