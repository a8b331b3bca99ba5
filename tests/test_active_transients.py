"""The classical spike detector: separates spikes from background, in memory and streamed from a window store;
and the cold start it feeds puts those spikes in the first batch."""

import numpy as np
import pytest
from scipy.signal import lfilter
from sklearn.metrics import roc_auc_score

from converters import synthetic
from converters.convert import convert_recording
from converters.windows import WindowStore
from ls_backend.active.inputs import PoolView
from ls_backend.active.strategies import ColdStart, Random
from ls_backend.active.transients import TransientDetector, detector_scores

SFREQ = 256.0


def transient_windows(n=300, n_chans=6, n_times=512, n_spikes=12, kinds=3, seed=0):
    """Robust-scaled-like windows of coloured noise in ``kinds`` background types (slow, alpha-like, fast); a few
    get a 40 ms spike-like transient (a sharp triangle, then a slow wave) on one channel and, weaker, on its
    neighbours (its field). Returns windows, spike mask and background kind."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(kinds, size=n)
    white = rng.standard_normal((n, n_chans, n_times + 200))
    x = np.empty((n, n_chans, n_times), np.float32)
    t = np.arange(n_times) / SFREQ
    for k, (pole, rhythm_hz) in enumerate([(0.95, 0.0), (0.8, 10.0), (0.3, 0.0)][:kinds]):
        sel = kind == k
        noise = lfilter([1.0], [1.0, -pole], white[sel], axis=2)[..., 200:]
        noise /= noise.std(axis=2, keepdims=True)
        x[sel] = noise + (1.5 * np.sin(2 * np.pi * rhythm_hz * t) if rhythm_hz else 0.0)
    spike = np.zeros(n, bool)
    spike[rng.choice(n, n_spikes, replace=False)] = True
    half = int(0.02 * SFREQ)
    shape = np.r_[np.linspace(0, -1, half), np.linspace(-1, 0.4, 2 * half), 0.4 * np.hanning(int(0.2 * SFREQ))]
    for i in np.flatnonzero(spike):
        c, t0 = rng.integers(n_chans), rng.integers(20, n_times - len(shape) - 20)
        for neighbour, gain in ((c - 1, 0.6), (c, 1.0), (c + 1, 0.6)):
            if 0 <= neighbour < n_chans:
                x[i, neighbour, t0 : t0 + len(shape)] += 7.0 * gain * shape
    return x, spike, kind


def test_detector_separates_injected_transients_from_background():
    windows, spike, _ = transient_windows()
    score = TransientDetector(sfreq=SFREQ).score(windows)
    assert score.shape == (len(windows),) and score.min() >= 0 and score.max() <= 1
    assert roc_auc_score(spike, score) > 0.95
    assert np.median(score[spike]) > np.quantile(score[~spike], 0.9)


def test_a_transient_with_a_field_outranks_a_larger_one_on_a_single_contact():
    windows, spike, _ = transient_windows(n=200, n_spikes=0)
    shape = np.hanning(12)
    windows[0, 2:5, 100:112] += 8.0 * shape  # a spike's field: three neighbouring contacts
    windows[1, 3, 100:112] += 12.0 * shape  # an electrode pop: one contact, larger
    score = TransientDetector(sfreq=SFREQ, top_channels=3).score(windows)
    assert score[0] > score[1] > np.median(score)
    single = TransientDetector(sfreq=SFREQ).score(windows)
    assert single[1] > single[0]  # the maximum over channels (the default) prefers the pop
    with pytest.raises(ValueError, match="top_channels must be at least 1, got 0"):
        TransientDetector(top_channels=0).score(windows)


def test_detector_ignores_absent_channels_and_checks_shapes():
    windows, spike, _ = transient_windows(n=60, n_spikes=4)
    padded = np.concatenate([windows, np.full((60, 2, 512), np.nan, np.float32)], axis=1)
    detector = TransientDetector()
    np.testing.assert_allclose(detector.score(padded), detector.score(windows))
    all_absent = np.full((3, 2, 512), np.nan, np.float32)
    assert np.all(detector.score(all_absent) == 0)
    features = detector.features(windows)
    assert features.shape == (60, 6, 2)
    with pytest.raises(ValueError, match=r"expected shape \[n, n_chans, n_times\]"):
        detector.features(windows[0])
    with pytest.raises(ValueError, match=r"features: expected shape \[n, n_chans, 2\]"):
        detector.score_features(features[..., :1])


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    """Three minutes of synthetic patient A (spikes, pops, muscle) converted to a window store."""
    tmp = tmp_path_factory.mktemp("store")
    profile = synthetic.PATIENTS["A"]
    edf = synthetic.write_edf(tmp / "A.edf", profile, 180)
    convert_recording(edf, tmp / "A.h5")
    return tmp / "A.h5", synthetic.make_events(profile, 180)


def window_truth(store, events):
    """Whether each window holds the peak of a synthetic spike."""
    starts = store.starts / store.sfreq
    peaks = np.array([e.peak_seconds for e in events if e.is_spike])
    k = np.searchsorted(starts, peaks, side="right") - 1
    truth = np.zeros(len(store), bool)
    truth[k[(k >= 0) & (peaks < starts[k] + store.window_samples / store.sfreq)]] = True
    return truth


def test_detector_scores_stream_a_window_store(synthetic_store):
    path, events = synthetic_store
    with WindowStore(path) as store:
        streamed = detector_scores(store, batch_size=16)
        whole = TransientDetector(sfreq=store.sfreq).score(np.concatenate([w for _, w in store.iter_batches(1000)]))
        truth = window_truth(store, events)
    np.testing.assert_allclose(streamed, whole, rtol=1e-6)
    assert truth.sum() >= 5
    assert roc_auc_score(truth, streamed) > 0.8


def spectral_embeddings(windows):
    """A stand-in for an untrained model's embedding: log power in a few bands, averaged over channels."""
    power = np.abs(np.fft.rfft(windows, axis=2)) ** 2
    freqs = np.fft.rfftfreq(windows.shape[2], 1 / SFREQ)
    bands = [(1, 4), (4, 8), (8, 13), (13, 30), (30, 80)]
    return np.stack([np.log(power[..., (freqs >= lo) & (freqs < hi)].mean(axis=2).mean(axis=1)) for lo, hi in bands],
                    axis=1)


def test_cold_start_first_batch_contains_the_spikes_and_covers_the_recording():
    windows, spike, kind = transient_windows(n=300, n_spikes=6)
    pool = PoolView(embeddings=spectral_embeddings(windows), detector_score=TransientDetector().score(windows))
    ranking = ColdStart(n_clusters=3).rank(pool, batch_size=12, rng=0)
    batch = ranking.batch
    assert spike[batch].sum() >= 5, "the likely spikes come first"
    assert set(kind[batch[~spike[batch]]]) == {0, 1, 2}, "every kind of background is shown"
    random_hits = [spike[Random().rank(pool, 12, rng=s).batch].sum() for s in range(5)]
    assert max(random_hits) <= 2
