"""Tests of the synthetic sEEG generator and its writers (short recordings, a few seconds each)."""

from __future__ import annotations

import csv
import itertools
import json
import threading
import tracemalloc

import h5py
import mne
import numpy as np
import pytest
from scipy import signal

from converters import synthetic as syn
from converters.synthetic import PATIENTS, SPIKE_KINDS
from converters.synthetic.writers import prefetch


def _patient(name: str, **changes: object) -> syn.PatientProfile:
    return PATIENTS[name].with_(**changes) if changes else PATIENTS[name]


# ---------------------------------------------------------------- profiles


def test_default_patients_differ() -> None:
    assert set(PATIENTS) >= {"A", "B", "C", "D"}
    profiles = list(PATIENTS.values())
    for p in profiles:
        assert 10 <= p.n_chans <= 24
        assert len(set(p.ch_names)) == p.n_chans
        assert p.focus_channel in p.ch_names
    assert len({p.sfreq for p in profiles}) == len(profiles)
    assert len({p.morphology for p in profiles}) == len(profiles)
    assert len({p.spike_rate_per_minute for p in profiles}) == len(profiles)
    assert len({p.spike_amplitude_uv for p in profiles}) == len(profiles)
    assert len({p.n_chans for p in profiles}) == len(profiles)
    assert len({tuple(p.layout) for p in profiles}) == len(profiles)
    assert len({p.background for p in profiles}) == len(profiles)
    assert len({p.artifacts for p in profiles}) == len(profiles)
    assert {p.line_freq_hz for p in profiles} == {50.0, 60.0}


def test_channel_names_are_shaft_plus_contact() -> None:
    p = PATIENTS["A"]
    assert p.layout == {"A": 8, "B'": 6, "C": 10}
    assert p.ch_names[:2] == ["A1", "A2"]
    assert "B'3" in p.ch_names
    assert p.ch_names[-1] == "C10"


def test_profile_accepts_dict_is_hashable_and_validates() -> None:
    p = _patient("A", shafts={"Z": 4, "B'": 6}, artifacts=syn.Artifacts())
    assert p.shafts == (("Z", 4), ("B'", 6))
    assert p.ch_names == ["Z1", "Z2", "Z3", "Z4", "B'1", "B'2", "B'3", "B'4", "B'5", "B'6"]
    assert hash(p) == hash(p.with_(shafts=(("Z", 4), ("B'", 6))))
    with pytest.raises(ValueError, match="focus"):
        _patient("A", shafts={"Z": 4}, artifacts=syn.Artifacts())
    with pytest.raises(ValueError, match="artifact"):
        _patient("A", shafts={"Z": 4, "B'": 6})
    with pytest.raises(ValueError, match="morphology"):
        _patient("A", morphology="wiggle")


@pytest.mark.parametrize("n_chans", [5, 24, 64, 128])
def test_with_n_channels(n_chans: int) -> None:
    for p in PATIENTS.values():
        q = syn.with_n_channels(p, n_chans)
        assert q.n_chans == n_chans
        assert q.focus_channel in q.ch_names
        assert max(n for _, n in q.shafts) <= syn.MAX_CONTACTS_PER_SHAFT
        assert all(ch in q.ch_names for ch in q.artifacts.pop_channels)


def test_benchmark_profile() -> None:
    p = syn.benchmark_profile(sfreq=32000, n_chans=24)
    assert (p.sfreq, p.n_chans, p.morphology) == (32000.0, 24, PATIENTS["A"].morphology)
    assert syn.benchmark_profile(1000, 64, patient="C").n_chans == 64


def test_changed_rate_and_channels_generate() -> None:
    p = syn.with_n_channels(_patient("B", sfreq=32000.0), 24)
    chunks = list(syn.iter_chunks(p, 2.5, chunk_seconds=1.0))
    assert [c.shape for c in chunks] == [(24, 32000), (24, 32000), (24, 16000)]
    assert all(c.dtype == np.float32 for c in chunks)


# ---------------------------------------------------------------- events


def test_event_rates_match_profiles() -> None:
    duration = 3600.0
    for p in PATIENTS.values():
        events = syn.make_events(p, duration)
        rates = {
            p.morphology: p.spike_rate_per_minute,
            "artifact_pop": p.artifacts.pop_rate_per_minute,
            "artifact_muscle": p.artifacts.muscle_rate_per_minute,
        }
        assert {e.kind for e in events} <= set(rates)
        for kind, rate in rates.items():
            n = sum(e.kind == kind for e in events)
            expected = rate * duration / 60
            assert abs(n - expected) < 3.5 * np.sqrt(expected) + 2, (p.name, kind, n, expected)


def test_events_are_consistent() -> None:
    for p in PATIENTS.values():
        duration = 300.0
        events = syn.make_events(p, duration)
        assert events == sorted(events, key=lambda e: e.onset_seconds)
        for e in events:
            assert e.kind in syn.EVENT_KINDS
            assert 0 <= e.onset_seconds <= e.peak_seconds <= e.onset_seconds + e.duration_seconds <= duration
            assert e.channels and set(e.channels) <= set(p.ch_names)
            if e.is_spike:
                assert e.kind == p.morphology
                assert e.channels[0] == p.focus_channel
                assert 0.02 < e.duration_seconds < 1.0
            elif e.kind == "artifact_pop":
                pops = p.artifacts.pop_channels
                assert len(e.channels) == 1 and (not pops or e.channels[0] in pops)
            else:  # muscle: the outermost contacts of one shaft near a muscle, outermost first
                shaft = e.channels[0].rstrip("0123456789")
                assert shaft in (p.artifacts.muscle_shafts or p.layout)
                n, k = p.layout[shaft], min(p.artifacts.muscle_n_channels, p.layout[shaft])
                assert e.channels == [f"{shaft}{c}" for c in range(n, n - k, -1)]


def test_events_deterministic_and_prefix_stable() -> None:
    p = PATIENTS["D"]
    short, long = syn.make_events(p, 200.0), syn.make_events(p, 400.0)
    assert short == syn.make_events(p, 200.0)
    assert long[: len(short)] == short
    assert syn.make_events(p.with_(seed=99), 200.0) != short


def test_events_tsv_round_trip(tmp_path) -> None:
    events = syn.make_events(PATIENTS["B"], 300.0)
    path = syn.write_events_tsv(tmp_path / "events.tsv", events)
    back = syn.read_events_tsv(path)
    assert [(e.kind, e.channels) for e in back] == [(e.kind, e.channels) for e in events]
    np.testing.assert_allclose([e.onset_seconds for e in back], [e.onset_seconds for e in events], atol=1e-6)
    np.testing.assert_allclose([e.peak_seconds for e in back], [e.peak_seconds for e in events], atol=1e-6)


# ---------------------------------------------------------------- signal


def test_generation_is_deterministic() -> None:
    p = PATIENTS["A"]
    a = syn.generate(p, 20.0, chunk_seconds=3.0)
    b = syn.generate(p, 20.0, chunk_seconds=3.0)
    assert a.dtype == np.float32 and a.shape == (p.n_chans, round(20 * p.sfreq))
    np.testing.assert_array_equal(a, b)
    c = syn.generate(p.with_(seed=12), 20.0, chunk_seconds=3.0)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("name,sfreq", [("A", None), ("C", None), ("D", 32000.0)])
def test_chunk_size_does_not_change_samples(name: str, sfreq: float | None) -> None:
    p = _patient(name, sfreq=sfreq) if sfreq else _patient(name)
    duration = 4.0 if sfreq else 20.0
    a = syn.generate(p, duration, chunk_seconds=1.0)
    b = syn.generate(p, duration, chunk_seconds=1.37)
    np.testing.assert_allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("name,sfreq", [("C", None), ("B", None), ("A", 32000.0)])
def test_no_seams_at_chunk_boundaries(name: str, sfreq: float | None) -> None:
    p = _patient(name, sfreq=sfreq) if sfreq else _patient(name)
    chunk_seconds = 0.5
    x = syn.generate(p, 6.0 if sfreq else 20.0, chunk_seconds=chunk_seconds).astype(np.float64)
    step = round(chunk_seconds * p.sfreq)
    jumps = np.abs(np.diff(x, axis=1))
    at_boundaries = jumps[:, step - 1 :: step]
    assert at_boundaries.mean() < 2 * jumps.mean()
    assert at_boundaries.max() < np.percentile(jumps, 99.99) * 1.5 + 1.0


def _peak_to_baseline(x: np.ndarray, centres: np.ndarray, sfreq: float, half_seconds: float) -> np.ndarray:
    """Largest excursion within +/- half_seconds of each centre from the median of the second around it."""
    half, around = round(half_seconds * sfreq), round(0.5 * sfreq)
    values = []
    for c in centres:
        w = x[max(c - around, 0) : c + around]
        values.append(np.max(np.abs(x[max(c - half, 0) : c + half] - np.median(w))))
    return np.array(values)


@pytest.mark.parametrize("name", sorted(PATIENTS))
def test_spikes_are_visible_on_the_focus_channel(name: str) -> None:
    p = PATIENTS[name]
    duration = 90.0
    x = syn.generate(p, duration)[p.ch_names.index(p.focus_channel)]
    events = syn.make_events(p, duration)
    spikes = [e for e in events if e.is_spike]
    assert len(spikes) >= 2
    peaks = np.array([round(e.peak_seconds * p.sfreq) for e in spikes])
    rng = np.random.default_rng(0)
    busy = np.zeros(x.size, bool)
    for e in events:
        start, stop = e.onset_seconds - 0.3, e.onset_seconds + e.duration_seconds + 0.3
        busy[max(round(start * p.sfreq), 0) : round(stop * p.sfreq)] = True
    quiet = rng.choice(np.flatnonzero(~busy[: x.size - round(p.sfreq)]), 200)
    at_spikes = _peak_to_baseline(x, peaks, p.sfreq, 0.01)
    at_random = _peak_to_baseline(x, quiet, p.sfreq, 0.01)
    assert np.median(at_spikes) > 2.5 * np.median(at_random)  # B, the low-SNR patient, is about 3.4
    assert np.median(at_spikes) > 0.5 * p.spike_amplitude_uv


def test_spread_decays_away_from_focus() -> None:
    p = PATIENTS["D"]
    x = syn.generate(p, 90.0)
    spikes = [e for e in syn.make_events(p, 90.0) if e.is_spike]
    contacts = ["X6", "X7", "X8", "X10"]
    sizes = []
    for ch in contacts:
        row = x[p.ch_names.index(ch)]
        peaks = np.array([round(e.peak_seconds * p.sfreq) for e in spikes])
        sizes.append(np.median(_peak_to_baseline(row, peaks, p.sfreq, 0.03)))
    assert sizes[0] > sizes[1] > sizes[2] > sizes[3]


def test_artifacts_are_in_the_signal() -> None:
    p = _patient("B", artifacts=syn.Artifacts(pop_rate_per_minute=3.0, pop_amplitude_uv=500.0,
                                               muscle_rate_per_minute=3.0, muscle_amplitude_uv=40.0))
    duration = 60.0
    x = syn.generate(p, duration)
    events = syn.make_events(p, duration)
    pops = [e for e in events if e.kind == "artifact_pop"]
    muscles = [e for e in events if e.kind == "artifact_muscle"]
    assert pops and muscles
    for e in pops:
        row = x[p.ch_names.index(e.channels[0])]
        i = round(e.onset_seconds * p.sfreq)
        step = np.abs(row[i + 2] - row[i - 2])
        assert step > 0.3 * p.artifacts.pop_amplitude_uv
    sos = signal.butter(4, [70, 98], btype="band", fs=p.sfreq, output="sos")  # above the 60 Hz line
    for e in muscles:
        row = signal.sosfiltfilt(sos, x[p.ch_names.index(e.channels[0])])
        a, b = round(e.onset_seconds * p.sfreq), round((e.onset_seconds + e.duration_seconds) * p.sfreq)
        inside = row[a + (b - a) // 4 : b - (b - a) // 4].std()
        assert inside > 2 * np.median(np.abs(row)) / 0.6745


def test_spectrum_has_background_rhythm_and_line_noise() -> None:
    p = PATIENTS["B"]
    x = syn.generate(p, 60.0)
    f, pxx = signal.welch(x, p.sfreq, nperseg=int(4 * p.sfreq))
    mean = pxx.mean(axis=0)

    def power(hz: float) -> float:
        return float(mean[np.argmin(np.abs(f - hz))])

    assert power(2) > 10 * power(40) > 10 * power(300)  # 1/f background
    assert power(p.line_freq_hz) > 30 * power(p.line_freq_hz - 4)
    assert power(p.background.rhythm_hz) > 3 * power(p.background.rhythm_hz + 6)


def test_generation_memory_is_bounded() -> None:
    p = PATIENTS["A"]

    def peak_bytes(duration: float) -> int:
        tracemalloc.start()
        for _ in syn.iter_chunks(p, duration, chunk_seconds=5.0):
            pass
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    short, long = peak_bytes(30.0), peak_bytes(240.0)
    full = p.n_chans * 240 * p.sfreq * 4
    assert long < 1.3 * short + 1e6
    assert long < full / 4


# ---------------------------------------------------------------- writers


def test_edf_read_by_mne(tmp_path) -> None:
    p = PATIENTS["B"]
    duration = 30.0
    path = syn.write_edf(tmp_path / "b.edf", p, duration)
    raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
    assert raw.ch_names == p.ch_names
    assert raw.info["sfreq"] == p.sfreq
    assert raw.n_times == round(duration * p.sfreq)
    assert raw.info["meas_date"].replace(tzinfo=None) == syn.DEFAULT_START
    events = syn.make_events(p, duration)
    annotations = raw.annotations
    assert list(annotations.description) == [e.kind for e in events]
    np.testing.assert_allclose(annotations.onset, [e.onset_seconds for e in events], atol=2e-6)
    np.testing.assert_allclose(annotations.duration, [e.duration_seconds for e in events], atol=2e-6)
    data_uv = raw.get_data() * 1e6
    expected = syn.generate(p, duration)
    lsb = syn.physical_range_uv(p) / 32767
    assert np.abs(data_uv - expected).max() <= lsb / 2 + 1e-3


def test_edf_header_is_plain_ascii_and_sized(tmp_path) -> None:
    p = PATIENTS["C"]
    path = syn.write_edf(tmp_path / "c.edf", p, 3.5)
    raw = path.read_bytes()
    n_signals = int(raw[252:256])
    header = raw[: 256 * (n_signals + 1)]
    assert all(32 <= b < 127 for b in header)
    assert header[192:197] == b"EDF+C"
    assert n_signals == p.n_chans + 1
    n_records = int(raw[236:244])
    assert n_records == 4  # rounded up to whole seconds
    labels = [header[256 + 16 * i : 256 + 16 * (i + 1)].decode().strip() for i in range(n_signals)]
    assert labels == [*p.ch_names, "EDF Annotations"]
    samples_off = 256 + n_signals * (16 + 80 + 8 * 5 + 80)
    spr = [int(header[samples_off + 8 * i : samples_off + 8 * (i + 1)]) for i in range(n_signals)]
    assert spr[:-1] == [int(p.sfreq)] * p.n_chans
    assert len(raw) == len(header) + n_records * 2 * sum(spr)


def test_edf_without_annotations(tmp_path) -> None:
    p = PATIENTS["C"]
    path = syn.write_edf(tmp_path / "c.edf", p, 5.0, with_annotations=False)
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert raw.ch_names == p.ch_names and len(raw.annotations) == 0


def test_edf_needs_integer_rate(tmp_path) -> None:
    with pytest.raises(ValueError, match="integer"):
        syn.write_edf(tmp_path / "x.edf", _patient("A", sfreq=1000.5), 2.0)


def test_edf_writer_checks_chunks_records_and_counts_clipping(tmp_path) -> None:
    spec = syn.EdfSpec(labels=("A1", "A2"), sfreq=100.0, physical_range=(-100.0, 100.0))
    with syn.EdfWriter(tmp_path / "w.edf", spec, n_records=2) as writer:
        with pytest.raises(ValueError, match=r"w.edf: a chunk must be \[2, a multiple of 100\]"):
            writer.write(np.zeros((2, 150)))
        chunk = np.zeros((2, 200))
        chunk[0, :3] = [150.0, -150.0, 99.0]
        writer.write(chunk)
        assert writer.clipped == 2
        with pytest.raises(ValueError, match="more than the 2 records"):
            writer.write(np.zeros((2, 100)))
    with pytest.raises(ValueError, match="1 records written, the header announces 2"), \
            syn.EdfWriter(tmp_path / "short.edf", spec, n_records=2) as writer:
        writer.write(np.zeros((2, 100)))
    with pytest.raises(ValueError, match="longer than 16"):
        syn.EdfWriter(tmp_path / "x.edf", syn.EdfSpec(labels=("L" * 17,), sfreq=1, physical_range=(-1, 1)), 1)
    assert not (tmp_path / "x.edf").exists()


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_hdf5(tmp_path, dtype: str) -> None:
    p = PATIENTS["D"]
    duration = 12.0
    path = syn.write_hdf5(tmp_path / "d.h5", p, duration, dtype=dtype, chunk_seconds=5.0)
    expected = syn.generate(p, duration)
    with h5py.File(path, "r") as f:
        dset = f["data"]
        assert dset.shape == (p.n_chans, round(duration * p.sfreq))
        assert dset.dtype == np.dtype(dtype)
        assert dset.chunks is not None
        for attrs in (dset.attrs, f.attrs):
            assert attrs["sfreq"] == p.sfreq
            assert [n.decode() if isinstance(n, bytes) else n for n in attrs["ch_names"]] == p.ch_names
            assert attrs["units"] == "uV"
        data = dset[:].astype(np.float32) * dset.attrs["scale_uv"]
    if dtype == "float32":
        np.testing.assert_array_equal(data, expected)
    else:
        assert np.abs(data - expected).max() <= dset_scale(path) / 2 + 1e-3


def dset_scale(path) -> float:
    with h5py.File(path, "r") as f:
        return float(f["data"].attrs["scale_uv"])


def test_bids_layout(tmp_path) -> None:
    p = PATIENTS["A"]
    duration = 20.0
    recording = syn.write_bids(tmp_path, "p01", p, duration)
    ieeg = tmp_path / "sub-p01" / "ieeg"
    assert recording == ieeg / "sub-p01_task-rest_ieeg.edf"
    assert recording.exists()
    description = json.loads((tmp_path / "dataset_description.json").read_text())
    assert description["BIDSVersion"] and description["Name"]
    sidecar = json.loads((ieeg / "sub-p01_task-rest_ieeg.json").read_text())
    assert sidecar["SamplingFrequency"] == p.sfreq
    assert sidecar["PowerLineFrequency"] == p.line_freq_hz
    assert sidecar["TaskName"] == "rest" and sidecar["iEEGReference"]
    with (ieeg / "sub-p01_task-rest_channels.tsv").open() as f:
        channels = list(csv.DictReader(f, delimiter="\t"))
    assert [r["name"] for r in channels] == p.ch_names
    assert {(r["type"], r["units"], r["status"], float(r["sampling_frequency"])) for r in channels} == {
        ("SEEG", "uV", "good", p.sfreq)
    }
    with (ieeg / "sub-p01_task-rest_events.tsv").open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    events = syn.make_events(p, duration)
    assert list(rows[0]) == ["onset", "duration", "trial_type", "channels", "peak"]
    assert [r["trial_type"] for r in rows] == [e.kind for e in events]
    assert [r["channels"].split(",") for r in rows] == [e.channels for e in events]
    np.testing.assert_allclose([float(r["peak"]) for r in rows], [e.peak_seconds for e in events], atol=1e-6)
    assert any(r["trial_type"] in SPIKE_KINDS for r in rows)
    raw = mne.io.read_raw_edf(recording, verbose="error")
    assert len(raw.annotations) == len(rows)
    with pytest.raises(ValueError):
        syn.write_bids(tmp_path, "p02", p, duration, fmt="hdf5")


# ---------------------------------------------------------------- command line and helpers


def test_cli_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        syn.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "--n-chans" in out and "--sfreq" in out


@pytest.mark.parametrize("fmt", ["edf", "hdf5", "bids"])
def test_cli_writes(tmp_path, capsys, fmt: str) -> None:
    out = tmp_path / ("bids" if fmt == "bids" else f"x.{fmt}")
    argv = ["--patient", "C", "--duration", "3", "--format", fmt, "--out", str(out), "--n-chans", "12"]
    assert syn.main([*argv, "--sfreq", "8000"]) == 0
    written = capsys.readouterr().out.strip()
    assert written.endswith(".edf" if fmt != "hdf5" else ".hdf5")
    if fmt == "hdf5":
        with h5py.File(written, "r") as f:
            shape, sfreq = f["data"].shape, f["data"].attrs["sfreq"]
    else:
        raw = mne.io.read_raw_edf(written, verbose="error")
        shape, sfreq = (len(raw.ch_names), raw.n_times), raw.info["sfreq"]
    assert shape == (12, 3 * 8000) and sfreq == 8000


def test_prefetch_propagates_errors_and_stops_early() -> None:
    def failing():
        yield np.zeros(1)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        list(prefetch(failing()))
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield i

    items = prefetch(endless(), depth=2)
    assert next(items) == 0
    items.close()
    assert len(pulled) <= 4  # the one consumed, two queued, one waiting: the producer stopped
    assert not any(t.name == "synthetic-prefetch" and t.is_alive() for t in threading.enumerate())


def test_blas_thread_limits_are_restored() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [info["num_threads"] for info in threadpoolctl.threadpool_info()]
    chunks = syn.iter_chunks(_patient("A", sfreq=32000.0), 2.0, chunk_seconds=1.0)
    next(chunks)
    assert [info["num_threads"] for info in threadpoolctl.threadpool_info()] == before  # between chunks
    list(chunks)
    assert [info["num_threads"] for info in threadpoolctl.threadpool_info()] == before
