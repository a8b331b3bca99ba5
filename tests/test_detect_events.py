"""Events from constructed per-sample, per-channel probability maps (no model): one per spike, merged across
channels and block borders, with the spike's true peak; streaming gives exactly the events of the whole array."""

import numpy as np
import pytest

from ls_backend.detect.events import Block, EventExtractor, extract_events

SFREQ = 256.0
CHANNELS = ["A1-A2", "A2-A3", "B1-B2", "B2-B3"]


def blank(n_samples: int = 2048, n_chans: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A probability map of zeros and a noise signal (robust-scaled), both ``[n_chans, n_samples]``."""
    rng = np.random.default_rng(seed)
    return np.zeros((n_chans, n_samples), np.float32), rng.standard_normal((n_chans, n_samples)).astype(np.float32)


def add_spike(
    proba: np.ndarray, signal: np.ndarray, peak: int, heights: dict[int, float], half_width: int = 10
) -> None:
    """A spike peaking at sample ``peak``: a probability plateau of ``heights[channel]`` over ``peak +- half_width``
    (smeared, as a model's is) and a sharp deflection at ``peak`` on each of those channels."""
    for channel, height in heights.items():
        proba[channel, peak - half_width : peak + half_width + 1] = height
        signal[channel, peak - 2 : peak + 3] += np.array([-3.0, 6.0, -20.0 * height, 6.0, -3.0], np.float32)


def streamed(proba: np.ndarray, signal: np.ndarray, cuts: list[int], version: str = "", **tuning: float):
    """Events (threshold 0.5) from the map fed in blocks cut at ``cuts``."""
    extractor = EventExtractor(SFREQ, CHANNELS, 0.5, version, **tuning)
    bounds = [0, *cuts, proba.shape[1]]
    events = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        events += extractor.feed(Block(start, proba[:, start:stop], signal[:, start:stop]))
    return events + extractor.finish()


def test_a_spike_across_a_block_border_is_found_once_with_its_true_peak():
    proba, signal = blank()
    add_spike(proba, signal, 1000, {1: 0.9})
    whole = extract_events(proba, signal, SFREQ, CHANNELS, 0.5, version="v1")
    assert len(whole) == 1
    event = whole[0]
    assert event.peak == 1000 / SFREQ and event.peak_channel == "A2-A3" and event.model_version == "v1"
    assert event.onset == 990 / SFREQ and event.duration == pytest.approx(21 / SFREQ)
    assert event.probability == pytest.approx(0.9) and list(event.channels) == ["A2-A3"]
    for cut in (990, 995, 1000, 1001, 1011, 1020):  # the border through the spike, at its edges, just after it
        assert streamed(proba, signal, [cut], "v1") == whole, cut
    assert streamed(proba, signal, list(range(1, 2048, 7)), "v1") == whole


def test_one_spike_on_several_channels_is_one_event_with_its_channels_highest_first():
    proba, signal = blank()
    add_spike(proba, signal, 600, {0: 0.6, 2: 0.95, 3: 0.7})
    proba[1, 595:605] = 0.3  # involved below the threshold: not listed
    (event,) = extract_events(proba, signal, SFREQ, CHANNELS, 0.5)
    assert event.peak_channel == "B1-B2" and event.probability == pytest.approx(0.95)
    assert list(event.channels) == ["B1-B2", "B2-B3", "A1-A2"]
    np.testing.assert_allclose(list(event.channels.values()), [0.95, 0.7, 0.6], rtol=1e-6)
    assert event.peak == 600 / SFREQ
    # with a lower threshold the weak channel joins
    (event,) = extract_events(proba, signal, SFREQ, CHANNELS, 0.25)
    assert list(event.channels) == ["B1-B2", "B2-B3", "A1-A2", "A2-A3"]


def test_the_peak_is_the_largest_deflection_of_the_peak_channel_not_of_the_probability():
    proba, signal = blank()
    proba[0, 400:440] = np.linspace(0.6, 0.9, 40)  # the probability rises late (smeared by the receptive field)
    signal[0, 410] = 25.0  # the spike
    signal[1, 430] = 50.0  # larger, but on a channel the model did not flag
    (event,) = extract_events(proba, signal, SFREQ, CHANNELS, 0.5)
    assert event.peak == 410 / SFREQ and event.peak_channel == "A1-A2"


@pytest.mark.parametrize("gap_ms, n_events", [(20, 1), (45, 1), (60, 2), (200, 2)])
def test_two_close_spikes_merge_under_the_gap_and_stay_apart_beyond_it(gap_ms, n_events):
    proba, signal = blank()
    first = 500
    second = first + 21 + round(gap_ms / 1000 * SFREQ)  # plateaus are 21 samples long
    add_spike(proba, signal, first, {0: 0.8})
    add_spike(proba, signal, second, {2: 0.9})
    events = extract_events(proba, signal, SFREQ, CHANNELS, 0.5)
    assert len(events) == n_events
    if n_events == 1:
        assert events[0].peak_channel == "B1-B2" and events[0].peak == second / SFREQ
        assert set(events[0].channels) == {"A1-A2", "B1-B2"}
    else:
        assert [e.peak for e in events] == [first / SFREQ, second / SFREQ]
    assert streamed(proba, signal, [first + 15, second - 3]) == events
    # the gap is a setting
    assert len(extract_events(proba, signal, SFREQ, CHANNELS, 0.5, merge_gap_seconds=0.5)) == 1


def test_the_threshold_sets_the_sensitivity():
    proba, signal = blank()
    for peak, height in [(300, 0.4), (800, 0.6), (1300, 0.85)]:
        add_spike(proba, signal, peak, {1: height})
    counts = [len(extract_events(proba, signal, SFREQ, CHANNELS, t)) for t in (0.3, 0.5, 0.7, 0.9)]
    assert counts == [3, 2, 1, 0]
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\)"):
            EventExtractor(SFREQ, CHANNELS, bad)


def test_absent_channels_are_ignored():
    proba, signal = blank()
    add_spike(proba, signal, 700, {0: 0.9, 1: 0.7})
    proba[1] = np.nan  # absent: its probability, even where high, does not count
    signal[1] = np.nan
    proba[:, 1500:1600] = np.nan  # every channel absent for a while
    (event,) = extract_events(proba, signal, SFREQ, CHANNELS, 0.5)
    assert list(event.channels) == ["A1-A2"] and event.peak == 700 / SFREQ
    assert streamed(proba, signal, [702, 1550]) == [event]


def test_short_runs_are_dropped_and_long_runs_split():
    proba, signal = blank(4096)
    signal[:] = 0  # no deflection anywhere: each event starts where its probability rises
    proba[0, 100:103] = 0.9  # 12 ms: shorter than the 20 ms minimum
    proba[2, 1000 : 1000 + 640] = 0.8  # 2.5 s: cut every second
    events = extract_events(proba, signal, SFREQ, CHANNELS, 0.5)
    assert [(e.onset, e.duration) for e in events] == [(1000 / SFREQ, 1.0), (1256 / SFREQ, 1.0), (1512 / SFREQ, 0.5)]
    assert streamed(proba, signal, [1100, 1300, 1630]) == events
    kept = extract_events(proba, signal, SFREQ, CHANNELS, 0.5, min_duration_seconds=0.01, max_duration_seconds=3.0)
    assert [(e.onset, e.duration) for e in kept] == [(100 / SFREQ, 3 / SFREQ), (1000 / SFREQ, 2.5)]
    with pytest.raises(ValueError, match="max_duration_seconds"):
        EventExtractor(SFREQ, CHANNELS, 0.5, min_duration_seconds=0.5, max_duration_seconds=0.1)


def random_map(n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs of every kind: isolated, close (merging), long (split), on one or several channels, some absent."""
    rng = np.random.default_rng(seed)
    proba, signal = blank(n_samples, seed=seed)
    position = 20
    while position < n_samples - 400:
        length = int(rng.choice([3, 8, 30, 120, 300, 400]))
        for channel in rng.choice(4, size=rng.integers(1, 4), replace=False):
            proba[channel, position : position + length] = rng.uniform(0.2, 1.0, length)
        position += length + int(rng.choice([1, 5, 12, 13, 14, 40, 200]))
    proba[3, rng.integers(0, n_samples - 500) :][:500] = np.nan
    return proba, signal


@pytest.mark.parametrize("seed", range(8))
def test_any_block_split_gives_exactly_the_events_of_the_whole_array(seed):
    proba, signal = random_map(12000, seed)
    rng = np.random.default_rng(100 + seed)
    whole = extract_events(proba, signal, SFREQ, CHANNELS, 0.5, version="v1")
    assert len(whole) > 20 and any(e.duration == 1.0 for e in whole) and any(len(e.channels) > 1 for e in whole)
    for _ in range(5):
        cuts = sorted(set(rng.integers(0, 12000, size=rng.integers(1, 60)).tolist()))  # may hold empty blocks
        assert streamed(proba, signal, cuts, "v1") == whole
    if seed == 0:
        assert streamed(proba, signal, list(range(1, 12000)), "v1") == whole  # one sample at a time


def test_blocks_are_checked():
    extractor = EventExtractor(SFREQ, CHANNELS, 0.5)
    proba, signal = blank()
    with pytest.raises(ValueError, match="3 channels, expected 4"):
        extractor.feed(Block(0, proba[:3], signal[:3]))
    extractor.feed(Block(0, proba[:, :100], signal[:, :100]))
    with pytest.raises(ValueError, match="in order: expected sample 100, got 200"):
        extractor.feed(Block(200, proba[:, 200:300], signal[:, 200:300]))
    with pytest.raises(ValueError, match="one shape"):
        Block(0, proba, signal[:, :10])


def test_a_spike_before_its_slow_wave_is_the_peak_and_the_onset():
    """Spike-wave: the model fires on the wave after the spike; the spike, sharper, is the event's peak."""
    proba, signal = blank()
    t = np.arange(80)
    signal[1, 620:700] -= 12.0 * np.sin(np.pi * t / 80)  # the slow wave: larger than the spike, smooth
    signal[1, 598:603] += np.array([-2.0, 4.0, -9.0, 4.0, -2.0], np.float32)  # the spike at 600
    proba[1, 630:690] = 0.9
    proba[1, 605:611] = 0.6  # a fragment of the same complex, 20 ms before
    (event,) = extract_events(proba, signal, SFREQ, CHANNELS, 0.5)
    assert (event.peak, event.onset) == (600 / SFREQ, 600 / SFREQ)
    assert event.onset + event.duration == 690 / SFREQ and event.probability == pytest.approx(0.9)
    for cuts in ([590], [603], [608], [640], [605, 631], [700]):
        assert streamed(proba, signal, cuts) == [event], cuts
