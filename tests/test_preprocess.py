"""Streaming preprocessing: chunked output equals whole-signal output, resampling is aligned, channels are planned."""

from dataclasses import dataclass

import numpy as np
import pytest
from scipy import signal

from converters.montage import bipolar_pairs, make_montage, parse_contact
from converters.preprocess import (
    PreprocessParams,
    Resampling,
    design_sos,
    plan_channels,
    preprocess_stream,
)
from converters.readers.base import Recording, RecordingError


@dataclass
class ArrayRecording(Recording):
    data: np.ndarray | None = None

    def _read(self, start, stop, picks):
        return self.data[picks, start:stop]


def make_recording(data, sfreq, names=None, **kwargs):
    names = names or [f"A{i + 1}" for i in range(data.shape[0])]
    return ArrayRecording(path="memory.edf", ch_names=names, sfreq=sfreq, n_times=data.shape[1], data=data, **kwargs)


def run(recording, params):
    plan = plan_channels(recording, params)
    return plan, np.concatenate(list(preprocess_stream(recording, plan, params)), axis=1)


@pytest.mark.parametrize("sfreq", [32000.0, 2048.0, 2000.0, 1000.0, 250.0])
def test_chunked_equals_whole_signal(sfreq):
    rng = np.random.default_rng(1)
    n = int(sfreq * 120) + 11
    data = np.cumsum(rng.standard_normal((3, n)), axis=1).astype(np.float32)
    recording = make_recording(data, sfreq)
    _, chunked = run(recording, PreprocessParams(chunk_seconds=3.7))
    _, whole = run(recording, PreprocessParams(chunk_seconds=10_000))
    assert chunked.shape == whole.shape == (2, Resampling.plan(sfreq, 256).n_out(n))
    assert np.abs(chunked - whole).max() < 1e-4 * whole.std()


@pytest.mark.parametrize("sfreq", [32000.0, 2000.0, 250.0])
def test_sine_survives_with_the_right_phase(sfreq):
    t = np.arange(int(sfreq * 60)) / sfreq
    data = np.stack([100 * np.sin(2 * np.pi * 7.0 * t), np.zeros_like(t)]).astype(np.float32)
    recording = make_recording(data, sfreq, names=["X1", "Y5"])
    params = PreprocessParams(montage="monopolar", line_freq_hz=None, chunk_seconds=4.0)
    _, out = run(recording, params)
    t_out = np.arange(out.shape[1]) / 256.0
    middle = slice(2560, out.shape[1] - 2560)  # away from the edges of the recording
    expected = 100 * np.sin(2 * np.pi * 7.0 * t_out)
    assert np.abs(out[0, middle] - expected[middle]).max() < 2.0  # < 2% of the amplitude, no lag


def test_line_noise_is_removed_and_band_kept():
    sfreq = 2048.0
    t = np.arange(int(sfreq * 60)) / sfreq
    data = np.stack([50 * np.sin(2 * np.pi * 50 * t) + 20 * np.sin(2 * np.pi * 10 * t)] * 2).astype(np.float32)
    _, out = run(make_recording(data, sfreq), PreprocessParams(montage="monopolar"))
    freqs, power = signal.welch(out[0, 2560:-2560], fs=256.0, nperseg=1024)
    assert power[np.argmin(abs(freqs - 50))] < 1e-3 * power[np.argmin(abs(freqs - 10))]


def test_flat_nan_and_bad_channels_are_excluded_with_a_warning(caplog):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((5, 20000)).astype(np.float32) * 30
    data[1] = 0.0
    data[2] = np.nan
    recording = make_recording(data, 1000.0, bads=["A4"])
    plan = plan_channels(recording, PreprocessParams())
    assert set(plan.excluded) == {"A2", "A3", "A4"}
    assert "A2 (flat" in caplog.text and "A3 (all NaN)" in caplog.text
    assert [recording.ch_names[i] for i in plan.picks] == ["A1", "A5"]


def test_all_flat_and_unknown_channel_errors_name_the_file():
    data = np.zeros((3, 5000), np.float32)
    with pytest.raises(RecordingError, match=r"memory.edf: all channels are flat"):
        plan_channels(make_recording(data, 1000.0), PreprocessParams())
    with pytest.raises(RecordingError, match=r"memory.edf: unknown channel\(s\) Z9"):
        plan_channels(make_recording(data + 1, 1000.0), PreprocessParams(), channels=["A1", "Z9"])


def test_nan_samples_inside_the_signal_are_zeroed():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((2, 30000)).astype(np.float32)
    data[0, 10000:10100] = np.nan
    _, out = run(make_recording(data, 1000.0), PreprocessParams(montage="monopolar"))
    assert np.isfinite(out).all()


def test_bipolar_montage_pairs_adjacent_contacts_of_one_shaft():
    names = ["A1", "A2", "A3", "B'1", "B'2", "C5", "EEG D1-Ref", "EEG D2-Ref"]
    assert parse_contact("B'3").shaft == "B'" and parse_contact("EEG D1-Ref").number == 1
    pairs = bipolar_pairs(names)
    assert [(names[i], names[j]) for i, j in pairs] == [
        ("A1", "A2"),
        ("A2", "A3"),
        ("B'1", "B'2"),
        ("EEG D1-Ref", "EEG D2-Ref"),
    ]
    montage = make_montage("auto", names, ["seeg"] * len(names))
    assert montage.ch_names == ["A1-A2", "A2-A3", "B'1-B'2", "D1-D2"]
    x = np.arange(len(names), dtype=np.float32)[:, None]
    assert montage.apply(x)[:, 0].tolist() == [-1, -1, -1, -1]


def test_scalp_eeg_is_shown_in_the_double_banana_in_auto_mode():
    names = [f"EEG {name}-REF" for name in
             ("FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "T7", "P7", "CZ")]  # fmt: skip
    montage = make_montage("auto", names, ["eeg"] * len(names))
    assert montage.kind == "banana"
    assert montage.ch_names == ["FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1",
                                "FP2-F4", "F4-C4", "C4-P4", "P4-O2"]  # fmt: skip
    x = np.arange(len(names), dtype=np.float32)[:, None]
    assert montage.apply(x)[0, 0] == 0 - 10  # Fp1 - F7
    assert make_montage("referential", names, ["eeg"] * len(names)).ch_names == names
    few = ["Fp1", "Fp2", "Cz"]
    assert make_montage("auto", few, ["eeg"] * 3).kind == "monopolar"  # not a 10-20 recording: as recorded
    with pytest.raises(ValueError, match="adjacent contacts"):
        make_montage("bipolar", ["Cz", "Pz"], ["eeg", "eeg"])
    with pytest.raises(ValueError, match="double banana needs"):
        make_montage("banana", ["A1", "A2"], ["eeg", "eeg"])


def test_filter_design_keeps_notch_harmonics_below_nyquist():
    sos = design_sos(PreprocessParams(line_freq_hz=60.0), 256.0)
    w, h = signal.sosfreqz(sos, worN=4096, fs=256.0)
    assert abs(h[np.argmin(abs(w - 60))]) < 0.01 and abs(h[np.argmin(abs(w - 120))]) < 0.01
    assert abs(h[np.argmin(abs(w - 20))]) > 0.9
    with pytest.raises(ValueError, match="line_freq_hz"):
        PreprocessParams(line_freq_hz=55.0)


@pytest.mark.parametrize("freq_hz", [170.0, 300.0, 1000.0])
def test_no_aliasing_into_the_band(freq_hz):
    sfreq = 32000.0
    t = np.arange(int(sfreq * 30)) / sfreq
    data = np.stack([100 * np.sin(2 * np.pi * freq_hz * t)] * 2).astype(np.float32)
    _, out = run(make_recording(data, sfreq), PreprocessParams(montage="monopolar", line_freq_hz=None))
    assert np.abs(out[0, 2560:-2560]).max() < 0.1  # 100 uV in, < 0.1 uV out: > 60 dB down
