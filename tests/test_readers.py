"""Readers: one shared contract every reader passes, on real vendor files and on files written here."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest

from converters.readers import (
    SUPPORTED_EXTENSIONS,
    Annotation,
    Recording,
    RecordingError,
    bids_entities,
    find_recordings,
    read_recording,
)
from converters.readers._util import ALIGN, pread_all
from converters.readers.array import ArrayRecording
from converters.readers.edf import EdfRecording, read_edf
from converters.readers.mne_formats import MneRecording
from converters.synthetic.edf import EdfSpec, write_edf_array

_DEFAULT_REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
REAL_DATA = Path(os.environ.get("SPIKE_AL_REAL_DATA") or _DEFAULT_REAL_DATA)
MNE_DATA = REAL_DATA / "mne-testing-data"

# Real files that must NOT read, with the reason. The optional module, when given, would make the file
# readable: with it installed, the file joins the readable ones.
EXPECTED_UNREADABLE: dict[str, tuple[str, str | None]] = {
    "mne-testing-data/nsx/test_NEURALSG_raw.ns3": ("Blackrock NSx 2.1, which MNE does not support", None),
    "mne-testing-data/EDF/SC4001EC-Hypnogram.edf": ("annotation-only EDF+ (a hypnogram): no signal", None),
    "mne-testing-data/EEGLAB/test_epochs.set": ("epoched EEGLAB file, not a continuous recording", None),
    "mne-testing-data/EGI/test_egi_pns.mff": ("EGI MFF needs the optional mffpy package", "mffpy"),
    "mne-testing-data/curry/Ref_channel_omitted Curry7.dap": ("Curry needs curryreader", "curryreader"),
    "mne-testing-data/curry/test_bdf_stim_channel Curry 8.cdt": ("Curry needs curryreader", "curryreader"),
    "mne-testing-data/antio/CA_208/test_CA_208.cnt": ("ANT Neuro CNT needs antio", "antio"),
    "mne-testing-data/antio/andy_101/Andy_101-raw.cnt": ("ANT Neuro CNT needs antio", "antio"),
    "mne-testing-data/neuralynx": ("Neuralynx needs the optional neo package", "neo"),
}


def _unreadable_reason(rel: str) -> str | None:
    reason, module = EXPECTED_UNREADABLE.get(rel, (None, None))
    if reason and module and importlib.util.find_spec(module) is not None:
        return None
    return reason


def _real_recordings() -> list[Path]:
    return find_recordings(REAL_DATA) if REAL_DATA.is_dir() else []


def _real_params(readable: bool) -> list:
    if not REAL_DATA.is_dir():
        return [pytest.param(None, id="no-real-data", marks=pytest.mark.skip(reason=f"{REAL_DATA} absent"))]
    params = []
    for path in _real_recordings():
        rel = path.relative_to(REAL_DATA).as_posix()
        if (_unreadable_reason(rel) is None) == readable:
            params.append(pytest.param(path, id=rel))
    return params


def _real_file(rel: str) -> Path:
    path = REAL_DATA / rel
    if not path.exists():
        pytest.skip(f"{path} absent")
    return path


# --- writers for the files the tests make ---------------------------------------------------------


TEST_START = datetime(2021, 3, 2, 10, 20, 30)


def write_edf(
    path: Path,
    data_uv: np.ndarray,
    sfreq: float,
    labels: Sequence[str] | None = None,
    *,
    record_seconds: float = 1.0,
    annotations: Sequence[tuple[float, float, str]] = (),
    bdf: bool = False,
    dimension: str = "uV",
    n_records_field: int | None = None,
    start_offset: float = 0.0,
) -> Path:
    """An EDF/BDF file from the generator's writer (EDF+ with annotations or a start offset), +-5000 units.

    ``n_records_field`` overwrites the header's record count afterwards (-1: unknown, 0: none).
    """
    spec = EdfSpec(
        labels=labels or [f"EEG C{i}" for i in range(data_uv.shape[0])],
        sfreq=sfreq,
        physical_range=(-5000.0, 5000.0),
        dimension=dimension,
        record_seconds=record_seconds,
        bdf=bdf,
        start=TEST_START,
        start_offset_seconds=start_offset,
    )
    write_edf_array(path, data_uv, spec, list(annotations) or None)
    if n_records_field is not None:
        with open(path, "r+b") as fh:
            fh.seek(236)
            fh.write(f"{n_records_field:<8d}".encode())
    return path


def write_brainvision(path: Path, data_uv: np.ndarray, sfreq: float, names: Sequence[str]) -> Path:
    """A BrainVision header/marker/data triplet (float32, multiplexed) with two markers."""
    stem = path.with_suffix("")
    channels = "\n".join(f"Ch{i + 1}={n},,1,µV" for i, n in enumerate(names))
    path.write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={stem.name}.eeg\nMarkerFile={stem.name}.vmrk\nDataFormat=BINARY\n"
        f"DataOrientation=MULTIPLEXED\nNumberOfChannels={len(names)}\n"
        f"SamplingInterval={1e6 / sfreq:g}\n[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n"
        f"[Channel Infos]\n{channels}\n",
        encoding="utf-8",
    )
    stem.with_suffix(".vmrk").write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={stem.name}.eeg\n[Marker Infos]\nMk1=New Segment,,1,1,0,20210302102030000000\n"
        "Mk2=Comment,spike,101,1,0\nMk3=Stimulus,S  1,201,1,0\n",
        encoding="utf-8",
    )
    data_uv.T.astype("<f4").tofile(stem.with_suffix(".eeg"))
    return path


def _signal(n_ch: int, n_times: int, sfreq: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / sfreq
    freqs = np.arange(1, n_ch + 1)[:, None]
    return (100 * np.sin(2 * np.pi * freqs * t) + rng.normal(0, 10, (n_ch, n_times))).astype(np.float64)


def _bids_dataset(root: Path, *, with_events: bool = True) -> Path:
    """A BIDS iEEG dataset: one EDF+ with embedded annotations and its sidecars (json at the root)."""
    folder = root / "sub-01" / "ses-02" / "ieeg"
    folder.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    sidecar = {"PowerLineFrequency": 50, "SamplingFrequency": 256}
    (root / "task-rest_ieeg.json").write_text(json.dumps(sidecar))
    base = "sub-01_ses-02_task-rest_run-3"
    data = write_edf(
        folder / f"{base}_ieeg.edf",
        _signal(4, 256 * 6, 256),
        256,
        ["LA1", "LA2", "EKG", "GRID1"],
        annotations=[(1.0, 0.0, "embedded")],
    )
    rows = ["name\ttype\tunits\tstatus", "LA1\tSEEG\tuV\tgood", "LA2\tSEEG\tuV\tbad", "EKG\tECG\tuV\tn/a"]
    rows.append("GRID1\tECOG\tuV\tgood")
    (folder / f"{base}_channels.tsv").write_text("\n".join(rows) + "\n")
    if with_events:
        (folder / f"{base}_events.tsv").write_text(
            "onset\tduration\ttrial_type\tvalue\n0.5\t0\tspike\t1\n2.25\t0.5\tn/a\tseizure\n3\tn/a\tspike\t1\n"
        )
    return data


def _mat73_like(path: Path, data: np.ndarray, names: Sequence[str], fs: float) -> Path:
    """An HDF5 file laid out like MATLAB v7.3: cell array of char as references to uint16 arrays."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        ref_list = []
        for i, name in enumerate(names):
            ds = refs.create_dataset(f"r{i}", data=np.array([[ord(c)] for c in name], dtype=np.uint16))
            ds.attrs["MATLAB_class"] = np.bytes_(b"char")
            ref_list.append(ds.ref)
        cell = f.create_dataset("labels", data=np.array([ref_list], dtype=h5py.ref_dtype))
        cell.attrs["MATLAB_class"] = np.bytes_(b"cell")
        hdr = f.create_group("hdr")
        hdr.attrs["MATLAB_class"] = np.bytes_(b"struct")
        hdr.create_dataset("Fs", data=np.array([[fs]]))
        f.create_dataset("eeg", data=data.T)  # MATLAB channels x times appears transposed in HDF5
    return path


# --- synthetic recordings for the shared contract -------------------------------------------------

SFREQ = 256.0


def _make_edf(tmp: Path) -> tuple[Path, dict]:
    data = _signal(5, int(SFREQ * 8), SFREQ)
    ann = [(0.5, 0.0, "spike"), (2.0, 1.5, "seizure"), (2.5, 0.0, "Überlappung")]
    return write_edf(tmp / "plus.edf", data, SFREQ, annotations=ann, start_offset=0.25), {}


def _make_bdf(tmp: Path) -> tuple[Path, dict]:
    return write_edf(tmp / "x.bdf", _signal(3, int(SFREQ * 5), SFREQ), SFREQ, bdf=True, dimension="mV"), {}


def _make_edf_mne_export(tmp: Path) -> tuple[Path, dict]:
    pytest.importorskip("edfio")
    import mne

    info = mne.create_info(["Fp1", "Fp2", "ECG"], SFREQ, ["eeg", "eeg", "ecg"])
    raw = mne.io.RawArray(_signal(3, int(SFREQ * 4), SFREQ) * 1e-6, info, verbose="error")
    raw.set_annotations(mne.Annotations([1.0], [0.5], ["spike"]))
    path = tmp / "exported.edf"
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    return path, {}


def _make_fif(tmp: Path) -> tuple[Path, dict]:
    import mne

    info = mne.create_info(["A1", "A2", "STI"], SFREQ, ["seeg", "seeg", "stim"])
    raw = mne.io.RawArray(_signal(3, int(SFREQ * 4), SFREQ) * 1e-6, info, verbose="error")
    raw.set_annotations(mne.Annotations([1.0, 3.0], [0.0, 0.5], ["spike", "artefact"]))
    path = tmp / "x_raw.fif"
    raw.save(path, verbose="error")
    return path, {}


def _make_brainvision(tmp: Path) -> tuple[Path, dict]:
    data = _signal(3, int(SFREQ * 3), SFREQ)
    return write_brainvision(tmp / "bv.vhdr", data, SFREQ, ["Fz", "Cz", "Pz"]), {}


def _make_hdf5(tmp: Path) -> tuple[Path, dict]:
    path = tmp / "x.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("signals/eeg", data=_signal(4, 3000, SFREQ).astype(np.float32))
        ds.attrs["sfreq"] = SFREQ
        ds.attrs["ch_names"] = np.array([b"Fp1", b"Fp2", b"C3", b"C4"])
        ds.attrs["units"] = "uV"
    return path, {}


def _make_hdf5_times_first(tmp: Path) -> tuple[Path, dict]:
    path = tmp / "x.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=_signal(6, 2000, SFREQ).T)
        f.create_dataset("fs", data=SFREQ)
        f.create_dataset("channels", data=[f"E{i}" for i in range(6)], dtype=h5py.string_dtype())
    return path, {}


def _make_mat73(tmp: Path) -> tuple[Path, dict]:
    return _mat73_like(tmp / "x.mat", _signal(5, 1500, SFREQ), ["Fp1", "F7", "T3", "T5", "O1"], SFREQ), {}


def _make_mat_v5(tmp: Path) -> tuple[Path, dict]:
    import scipy.io

    path = tmp / "v5.mat"
    data = _signal(4, 1200, SFREQ)
    labels = np.array(["A", "B", "C", "D"], dtype=object)
    scipy.io.savemat(path, {"eeg": data, "srate": SFREQ, "labels": labels})
    return path, {}


def _make_bids(tmp: Path) -> tuple[Path, dict]:
    return _bids_dataset(tmp / "bids"), {}


SYNTHETIC: dict[str, Callable[[Path], tuple[Path, dict]]] = {
    "edf+": _make_edf,
    "bdf": _make_bdf,
    "edf-mne-export": _make_edf_mne_export,
    "fif": _make_fif,
    "brainvision": _make_brainvision,
    "hdf5": _make_hdf5,
    "hdf5-times-first": _make_hdf5_times_first,
    "mat-v7.3": _make_mat73,
    "mat-v5": _make_mat_v5,
    "bids": _make_bids,
}


# --- the shared contract ---------------------------------------------------------------------------


def check_recording(rec: Recording) -> None:
    """What every reader guarantees."""
    assert isinstance(rec, Recording)
    assert rec.n_chans > 0 and all(isinstance(n, str) and n for n in rec.ch_names)
    assert len(set(rec.ch_names)) == rec.n_chans, "channel names must be unique"
    assert len(rec.ch_types) == rec.n_chans and all(isinstance(t, str) and t for t in rec.ch_types)
    assert rec.sfreq > 0 and rec.n_times > 0
    assert set(rec.bads) <= set(rec.ch_names)
    n = rec.n_times
    head = rec.read(0, min(n, 1000))
    assert head.shape == (rec.n_chans, min(n, 1000)) and head.dtype == np.float32
    assert np.isfinite(head).all()
    a = n // 3
    b = min(n, a + 300)
    lo, hi = max(0, a - 77), min(n, b + 55)
    big = rec.read(lo, hi)
    small = rec.read(a, b)
    np.testing.assert_array_equal(small, big[:, a - lo : b - lo])
    picks = [rec.n_chans - 1, 0]
    np.testing.assert_array_equal(rec.read(a, b, picks=picks), small[picks])
    assert rec.read(a, a).shape == (rec.n_chans, 0)
    with pytest.raises(RecordingError):
        rec.read(0, n + 1)
    for ann in rec.annotations:
        assert isinstance(ann, Annotation) and isinstance(ann.description, str)
        assert 0 <= ann.onset_seconds <= rec.duration_seconds
        assert ann.duration_seconds >= 0
    assert rec.meas_date is None or isinstance(rec.meas_date, datetime)


@pytest.mark.parametrize("path", _real_params(readable=True))
def test_real_file_contract(path: Path) -> None:
    with read_recording(path) as rec:
        check_recording(rec)


@pytest.mark.parametrize("kind", sorted(SYNTHETIC))
def test_synthetic_file_contract(kind: str, tmp_path: Path) -> None:
    path, options = SYNTHETIC[kind](tmp_path)
    with read_recording(path, **options) as rec:
        check_recording(rec)


@pytest.mark.parametrize("path", _real_params(readable=False))
def test_real_unreadable_file_gives_clear_error(path: Path) -> None:
    rel = path.relative_to(REAL_DATA).as_posix()
    with pytest.raises(RecordingError) as err:
        read_recording(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message, message
    module = EXPECTED_UNREADABLE[rel][1]
    assert module is None or f"package '{module}" in message, message  # the user learns what to install


def test_expected_unreadable_list_is_current() -> None:
    if not REAL_DATA.is_dir():
        pytest.skip(f"{REAL_DATA} absent")
    listed = {p.relative_to(REAL_DATA).as_posix() for p in _real_recordings()}
    assert set(EXPECTED_UNREADABLE) <= listed


# --- fast EDF reader ------------------------------------------------------------------------------


def _real_edf_bdf() -> list:
    if not REAL_DATA.is_dir():
        return [pytest.param(None, id="no-real-data", marks=pytest.mark.skip(reason=f"{REAL_DATA} absent"))]
    rels = {p: p.relative_to(REAL_DATA).as_posix() for p in _real_recordings()}
    return [
        pytest.param(p, id=rel)
        for p, rel in rels.items()
        if p.suffix.lower() in (".edf", ".bdf") and not _unreadable_reason(rel)
    ]


@pytest.mark.parametrize("path", _real_edf_bdf())
def test_fast_edf_matches_mne(path: Path) -> None:
    rec = read_recording(path)
    ref = read_recording(path, engine="mne")
    assert isinstance(ref, MneRecording)
    if not isinstance(rec, EdfRecording):
        pytest.skip(f"{path.name} is not a continuous EDF/BDF (read by MNE)")
    assert rec.sfreq == ref.sfreq and rec.n_times == ref.n_times
    common = [n for n in rec.ch_names if n in ref.ch_names]
    assert len(common) == rec.n_chans, "the fast reader may only leave channels out"
    mine = rec.read(0, rec.n_times)
    theirs = ref.read(0, ref.n_times, picks=[ref.ch_names.index(n) for n in common])
    scale = np.abs(theirs).max(axis=1, keepdims=True) + 1e-3
    np.testing.assert_array_less(np.abs(mine - theirs) / scale, 1e-5)
    assert [a.description for a in rec.annotations] == [a.description for a in ref.annotations]
    np.testing.assert_allclose(
        [a.onset_seconds for a in rec.annotations], [a.onset_seconds for a in ref.annotations], atol=1e-3
    )
    assert abs((rec.meas_date - ref.meas_date).total_seconds()) < 1


@pytest.mark.parametrize("fmt", ["edf", "bdf"])
def test_mne_export_round_trip(fmt: str, tmp_path: Path) -> None:
    """A file MNE's export (edfio) writes: the fast reader, MNE's reader and the exported data agree."""
    import mne

    data = _signal(3, int(SFREQ * 4), SFREQ)
    info = mne.create_info(["Fp1", "Fp2", "SEEG A1"], SFREQ, "eeg")
    raw = mne.io.RawArray(data * 1e-6, info, verbose="error")
    raw.set_annotations(mne.Annotations([1.0, 2.25], [0.5, 0.0], ["spike", "Überlappung"]))
    path = tmp_path / f"exported.{fmt}"
    mne.export.export_raw(path, raw, fmt=fmt, verbose="error")
    with read_recording(path) as rec, read_recording(path, engine="mne") as ref:
        assert isinstance(rec, EdfRecording) and isinstance(ref, MneRecording)
        assert rec.ch_names == ref.ch_names == info.ch_names and rec.n_times == ref.n_times == data.shape[1]
        mine = rec.read(0, rec.n_times)
        np.testing.assert_allclose(mine, ref.read(0, ref.n_times), rtol=1e-5, atol=1e-3)
        lsb = 2 * np.abs(data).max() / (2**24 if fmt == "bdf" else 2**16)  # MNE scales each channel to its peak
        assert np.abs(mine - data).max() <= 2 * lsb
        assert [(a.onset_seconds, a.duration_seconds, a.description) for a in rec.annotations] == [
            (1.0, 0.5, "spike"),
            (2.25, 0.0, "Überlappung"),
        ]


@pytest.mark.parametrize("bdf", [False, True])
def test_edf_writer_read_by_edfio(bdf: bool, tmp_path: Path) -> None:
    """edfio, an independent implementation, reads what the project's writer wrote: header, samples, TALs."""
    edfio = pytest.importorskip("edfio")
    data = _signal(3, int(SFREQ * 5), SFREQ)
    ann = [(0.5, 0.0, "spike"), (2.0, 1.5, "seizure")]
    labels = ["A1", "A2", "B1"]
    path = write_edf(tmp_path / ("w.bdf" if bdf else "w.edf"), data, SFREQ, labels, annotations=ann, bdf=bdf)
    edf = (edfio.read_bdf if bdf else edfio.read_edf)(path)
    assert [sig.label for sig in edf.signals] == ["A1", "A2", "B1"]
    assert {sig.sampling_frequency for sig in edf.signals} == {SFREQ}
    assert datetime.combine(edf.startdate, edf.starttime) == TEST_START
    lsb = 10_000 / (2**24 if bdf else 2**16)
    for sig, row in zip(edf.signals, data):
        assert np.abs(sig.data - row).max() <= lsb
    assert [(a.onset, a.duration or 0.0, a.text) for a in edf.annotations] == ann


def test_edf_plus_annotations_from_real_files() -> None:
    with read_recording(_real_file("mne-testing-data/EDF/test_utf8_annotations.edf")) as rec:
        assert isinstance(rec, EdfRecording)
        assert Annotation(2.0, 0.5, "仰卧") in rec.annotations
    with read_recording(_real_file("mne-testing-data/EDF/test_edf_overlapping_annotations.edf")) as rec:
        anns = rec.annotations
        assert len(anns) == 38
        assert any(x.onset_seconds + x.duration_seconds > y.onset_seconds for x, y in zip(anns, anns[1:]))
    with read_recording(_real_file("mne-testing-data/EDF/subsecond_starttime.edf")) as rec:
        spike = [a for a in rec.annotations if a.description == "XLSpike"]
        assert len(spike) == 1 and spike[0].onset_seconds == pytest.approx(2.3457031 - 0.3945312)
        assert rec.meas_date is not None and rec.meas_date.microsecond == 394531


@pytest.mark.parametrize("bdf", [False, True])
def test_edf_direct_reads_match_page_cache_reads(bdf: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large files are read with O_DIRECT (aligned blocks around unaligned records): same samples."""
    import converters.readers.edf as edf

    path = write_edf(tmp_path / ("x.bdf" if bdf else "x.edf"), _signal(3, int(SFREQ * 9), SFREQ), SFREQ, bdf=bdf)
    with read_edf(path) as rec:
        assert rec._direct_fd is None  # small file: page cache
        expected = [rec.read(a, b) for a, b in [(0, 700), (333, 1999), (1000, rec.n_times)]]
    monkeypatch.setattr(edf, "DIRECT_READ_BYTES", 0)
    with read_edf(path) as rec:
        if rec._direct_fd is None:
            pytest.skip("this file system does not support O_DIRECT")
        got = [rec.read(a, b) for a, b in [(0, 700), (333, 1999), (1000, rec.n_times)]]
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


def test_edf_writer_roundtrip_units_and_annotations(tmp_path: Path) -> None:
    data = _signal(3, 512, SFREQ)
    path = write_edf(
        tmp_path / "a.edf", data, SFREQ, ["EEG Fp1", "ECG", "SEEG A1"], annotations=[(1.25, 0.5, "spike")]
    )
    with read_edf(path) as rec:
        assert rec.ch_names == ["EEG Fp1", "ECG", "SEEG A1"] and rec.ch_types == ["eeg", "ecg", "seeg"]
        np.testing.assert_allclose(rec.read(0, 512), data, atol=0.2)  # 16-bit quantisation of +-5000 uV
        assert rec.annotations == [Annotation(1.25, 0.5, "spike")]
        assert rec.meas_date == datetime(2021, 3, 2, 10, 20, 30, tzinfo=timezone.utc)
    mv = write_edf(tmp_path / "mv.bdf", data / 1000, SFREQ, bdf=True, dimension="mV")
    with read_recording(mv) as rec:
        np.testing.assert_allclose(rec.read(0, 512), data, atol=0.5)  # 24-bit steps of 0.6 uV


def test_edf_other_rate_and_stim_signals_left_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_edf(tmp_path / "a.edf", _signal(3, 512, SFREQ), SFREQ, ["EEG A", "EEG B", "Status"])
    with read_edf(path) as rec:
        assert rec.ch_names == ["EEG A", "EEG B"]
    real = _real_file("mne-testing-data/EDF/test_reduced.edf")
    with caplog.at_level(logging.WARNING, logger="converters.readers.edf"), read_edf(real) as rec:
        assert rec.sfreq == 512 and "Status" not in rec.ch_names
    assert "another sampling rate left out" in caplog.text


def test_truncated_edf(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_edf(tmp_path / "t.edf", _signal(2, int(SFREQ * 4), SFREQ), SFREQ)
    full = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(full - 100)
    with pytest.raises(RecordingError, match="truncated") as err:
        read_recording(path)
    assert str(path) in str(err.value) and str(full) in str(err.value) and str(full - 100) in str(err.value)
    with caplog.at_level(logging.WARNING), read_recording(path, allow_truncated=True) as rec:
        assert rec.n_times == 3 * SFREQ
    assert "truncated" in caplog.text


def test_edf_unknown_record_count_uses_file_size(tmp_path: Path) -> None:
    path = write_edf(tmp_path / "u.edf", _signal(2, int(SFREQ * 3), SFREQ), SFREQ, n_records_field=-1)
    with read_recording(path) as rec:
        assert rec.n_times == 3 * SFREQ


def test_zero_length_and_empty_files(tmp_path: Path) -> None:
    path = write_edf(tmp_path / "z.edf", _signal(2, int(SFREQ * 2), SFREQ), SFREQ, n_records_field=0)
    with open(path, "r+b") as fh:
        fh.truncate(256 * 3)
    with pytest.raises(RecordingError, match="zero-length"):
        read_recording(path)
    empty = tmp_path / "empty.edf"
    empty.write_bytes(b"")
    with pytest.raises(RecordingError, match="empty"):
        read_recording(empty)
    h5 = tmp_path / "zero.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("data", shape=(3, 0), dtype="f4").attrs["sfreq"] = 100.0
    with pytest.raises(RecordingError):
        read_recording(h5, orientation="channels_first")


def test_corrupt_unsupported_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.edf"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    bad_vhdr = tmp_path / "bad.vhdr"
    bad_vhdr.write_text("not a header\n")
    other = tmp_path / "notes.xyz"
    other.write_text("x")
    for path, pattern in [
        (garbage, "garbage.edf"),
        (bad_vhdr, "bad.vhdr"),
        (other, "unsupported file extension '.xyz'"),
        (tmp_path / "missing.edf", "no such file"),
    ]:
        with pytest.raises(RecordingError, match=pattern) as err:
            read_recording(path)
        assert "\n" not in str(err.value)


def test_nsx_21_gives_error_naming_the_file() -> None:
    path = _real_file("mne-testing-data/nsx/test_NEURALSG_raw.ns3")
    with pytest.raises(RecordingError, match="2.1") as err:
        read_recording(path)
    assert str(path) in str(err.value)


def test_edf_chunk_read_touches_only_its_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk at the end of a 16 GB (sparse) EDF reads only its own records: O(chunk), not O(file)."""
    import converters.readers.edf as edf

    n_ch, spr, n_records = 24, 32000, 10_000
    path = write_edf(tmp_path / "big.edf", np.zeros((n_ch, spr)), spr, n_records_field=n_records)
    header_bytes, record_bytes = 256 * (n_ch + 1), n_ch * spr * 2
    with open(path, "r+b") as fh:
        fh.truncate(header_bytes + n_records * record_bytes)
    if path.stat().st_blocks * 512 > 1e9:
        pytest.skip("no sparse files on this file system")
    reads: list[tuple[int, int]] = []

    def counting_pread(fd: int, view: memoryview, offset: int) -> int:
        done = pread_all(fd, view, offset)
        reads.append((offset, done))
        return done

    monkeypatch.setattr(edf, "pread_all", counting_pread)
    with read_recording(path) as rec:
        assert rec.duration_seconds == n_records
        chunk = rec.read(rec.n_times - 10 * spr - 5, rec.n_times - 5)  # 5 samples of record 9989, up to 9999
        assert chunk.shape == (n_ch, 10 * spr)
    first_byte = header_bytes + (n_records - 11) * record_bytes
    assert reads and min(offset for offset, _ in reads) >= first_byte - ALIGN
    assert sum(done for _, done in reads) <= 11 * record_bytes + 2 * ALIGN


def test_mne_reader_drops_stim_keeps_types() -> None:
    with read_recording(_real_file("mne-testing-data/BDF/test_bdf_stim_channel.bdf"), engine="mne") as rec:
        assert "Status" not in rec.ch_names and rec.n_chans == 3
    with read_recording(_real_file("mne-testing-data/NihonKohden/MB0400FU.EEG")) as rec:
        assert {"bio", "misc"} <= set(rec.ch_types)
    persyst = "mne-testing-data/Persyst/sub-pt1_ses-02_task-monitor_acq-ecog_run-01_clip2.lay"
    with read_recording(_real_file(persyst)) as rec:
        assert rec.n_chans == 83 and rec.sfreq == 200
        assert any("seizure" in a.description.lower() for a in rec.annotations)


def test_cnt_needs_int16_and_companion_files_redirect() -> None:
    with read_recording(_real_file("mne-testing-data/CNT/scan41_short.cnt")) as rec:
        assert rec.n_chans == 128 and rec.n_times == 3070
    eeg = _real_file("mne-testing-data/Brainvision/test_NO.eeg")
    with read_recording(eeg) as rec:
        assert rec.path.suffix == ".vhdr" and rec.n_chans == 65


def test_brainvision_markers(tmp_path: Path) -> None:
    path, _ = _make_brainvision(tmp_path)
    with read_recording(path) as rec:
        descriptions = [a.description for a in rec.annotations]
        assert "Comment/spike" in descriptions and "Stimulus/S  1" in descriptions
        assert rec.read(0, 10).shape == (3, 10)
    with read_recording(path.with_suffix(".eeg")) as rec:  # the data file leads to its header
        assert rec.path == path


def test_fif_first_samp_annotations(tmp_path: Path) -> None:
    import mne

    info = mne.create_info(["A", "B"], SFREQ, "eeg")
    raw = mne.io.RawArray(_signal(2, int(SFREQ * 6), SFREQ) * 1e-6, info, first_samp=512, verbose="error")
    raw.set_meas_date(datetime(2020, 1, 1, tzinfo=timezone.utc))
    raw.set_annotations(mne.Annotations([1.5], [0.0], ["spike"], orig_time=None))
    path = tmp_path / "fs_raw.fif"
    raw.save(path, verbose="error")
    with read_recording(path) as rec:
        assert rec.annotations == [Annotation(1.5, 0.0, "spike")]


# --- HDF5 and MATLAB ------------------------------------------------------------------------------


def test_hdf5_orientation_names_units(tmp_path: Path) -> None:
    data = _signal(4, 900, SFREQ)
    path = tmp_path / "o.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("tc", data=data.T * 1e-3).attrs["units"] = "mV"
        f.create_dataset("small", data=np.zeros((2, 2)))
        f.attrs["srate"] = SFREQ
        f.create_dataset("meta/labels", data=np.array([b"a", b"b", b"c", b"d"]))
    with read_recording(path) as rec:
        assert isinstance(rec, ArrayRecording)
        assert rec.ch_names == ["a", "b", "c", "d"] and rec.n_times == 900 and rec.sfreq == SFREQ
        np.testing.assert_allclose(rec.read(10, 20, picks=[2]), data[[2], 10:20], rtol=1e-5)
    with read_recording(path, orientation="channels_first", dataset="tc", units="V", sfreq=100) as rec:
        assert rec.n_chans == 900 and rec.n_times == 4 and rec.sfreq == 100
        assert rec.ch_names[0] == "ch001"
        np.testing.assert_allclose(rec.read(0, 4, picks=[5]), data[:, [5]].T * 1e3, rtol=1e-5)
    with read_recording(path, ch_names=["w", "x", "y", "z"]) as rec:
        assert rec.ch_names == ["w", "x", "y", "z"]
    with pytest.raises(RecordingError, match="not a 2-D numeric dataset"):
        read_recording(path, dataset="nope")


def test_hdf5_missing_sfreq_asks_for_option(tmp_path: Path) -> None:
    path = tmp_path / "nofs.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros((3, 500), dtype="f4"))
    with pytest.raises(RecordingError, match="sfreq=") as err:
        read_recording(path)
    assert "--sfreq" in str(err.value) and str(path) in str(err.value)
    with read_recording(path, sfreq=250) as rec:
        assert rec.sfreq == 250 and rec.n_chans == 3


def test_spikenet_matlab_v73_sample() -> None:
    with read_recording(_real_file("spikenet1-sample/sample_eeg.mat")) as rec:
        assert (rec.n_chans, rec.sfreq, rec.duration_seconds) == (19, 128, 180)
        assert rec.ch_names[0].isalnum() and len(set(rec.ch_names)) == 19
        assert 1 < float(np.abs(rec.read(0, 1280)).std()) < 1000  # microvolt-scale EEG


def test_eeglab_v73_set_matches_mne() -> None:
    h5_set = _real_file("mne-testing-data/EEGLAB/test_raw_h5.set")
    with read_recording(h5_set) as rec, read_recording(MNE_DATA / "EEGLAB" / "test_raw.set") as ref:
        assert isinstance(rec, ArrayRecording) and isinstance(ref, MneRecording)
        assert (rec.n_chans, rec.n_times, rec.sfreq) == (ref.n_chans, ref.n_times, ref.sfreq)
        np.testing.assert_allclose(rec.read(1000, 3000), ref.read(1000, 3000), rtol=1e-5, atol=1e-3)
        assert len(rec.annotations) == len(ref.annotations) == 154
        np.testing.assert_allclose(
            [a.onset_seconds for a in rec.annotations], [a.onset_seconds for a in ref.annotations], atol=1e-6
        )
        assert [a.description for a in rec.annotations] == [a.description for a in ref.annotations]
    with read_recording(MNE_DATA / "EEGLAB" / "test_raw_hdf5.set") as rec:
        assert (rec.n_chans, rec.n_times, rec.sfreq) == (271, 256, 1024)


def test_mat_v5_and_v73_layouts(tmp_path: Path) -> None:
    path, _ = _make_mat73(tmp_path)
    with read_recording(path) as rec:
        assert rec.ch_names == ["Fp1", "F7", "T3", "T5", "O1"] and rec.n_times == 1500
    path, _ = _make_mat_v5(tmp_path)
    with read_recording(path) as rec:
        assert rec.ch_names == ["A", "B", "C", "D"] and rec.sfreq == SFREQ and rec.n_times == 1200


# --- BIDS -----------------------------------------------------------------------------------------


def test_bids_sidecars_applied(tmp_path: Path) -> None:
    data = _bids_dataset(tmp_path / "ds")
    with read_recording(data) as rec:
        assert rec.ch_types == ["seeg", "seeg", "ecg", "ecog"]
        assert rec.bads == ["LA2"]
        assert [(a.onset_seconds, a.duration_seconds, a.description) for a in rec.annotations] == [
            (0.5, 0.0, "spike"),
            (2.25, 0.5, "seizure"),
            (3.0, 0.0, "spike"),
        ]
        assert rec.line_freq_hz == 50
    assert find_recordings(tmp_path / "ds") == [data]
    with read_recording(tmp_path / "ds") as rec:  # a dataset with one recording reads as that recording
        assert rec.path == data


def test_bids_without_events_keeps_embedded_annotations(tmp_path: Path) -> None:
    data = _bids_dataset(tmp_path / "ds", with_events=False)
    with read_recording(data) as rec:
        assert [a.description for a in rec.annotations] == ["embedded"]


def test_bids_entities() -> None:
    assert bids_entities("sub-01_ses-02_task-rest_run-3_ieeg.edf") == {
        "subject": "01",
        "session": "02",
        "task": "rest",
        "run": "3",
        "suffix": "ieeg",
    }
    assert bids_entities(Path("/x/sub-pt1_task-monitor_acq-ecog_eeg.vhdr"))["acquisition"] == "ecog"
    assert bids_entities("recording.edf") == {}


def test_find_recordings(tmp_path: Path) -> None:
    write_brainvision(tmp_path / "a.vhdr", _signal(2, 100, SFREQ), SFREQ, ["x", "y"])
    (tmp_path / "sub").mkdir()
    write_edf(tmp_path / "sub" / "b.EDF", _signal(1, 256, 256), 256)
    (tmp_path / "notes.txt").write_text("x")
    assert find_recordings(tmp_path) == [tmp_path / "a.vhdr", tmp_path / "sub" / "b.EDF"]
    assert find_recordings(tmp_path / "a.vhdr") == [tmp_path / "a.vhdr"]
    with pytest.raises(RecordingError, match="unsupported"):
        find_recordings(tmp_path / "notes.txt")
    with pytest.raises(RecordingError, match="2 recordings"):
        read_recording(tmp_path)
    assert ".edf" in SUPPORTED_EXTENSIONS and ".mat" in SUPPORTED_EXTENSIONS
    if REAL_DATA.is_dir():
        real = {p.relative_to(REAL_DATA).as_posix() for p in _real_recordings()}
        assert "mne-testing-data/Brainvision/test_NO.vhdr" in real
        assert "mne-testing-data/Brainvision/test_NO.eeg" not in real
        assert "mne-testing-data/NihonKohden/MB0400FU.EEG" in real
        assert "mne-testing-data/neuralynx" in real
