"""``python -m converters.import`` without a server: dry runs, parallel conversion, and every bad input."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from converters.cli import main
from converters.synthetic import PATIENTS, write_bids, write_edf, write_hdf5
from converters.windows import WindowStore

SHORT_SECONDS = 40


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids")
    write_bids(root, "p01", PATIENTS["A"], SHORT_SECONDS)
    return root


def run_cli(*args):
    return main([str(a) for a in args])


def test_dry_run_writes_tasks_config_and_store(bids_root, tmp_path, capsys):
    out = tmp_path / "tasks.json"
    assert run_cli(bids_root, "--patient", "P01", "--dry-run", "--out", out, "--store-dir", tmp_path / "s") == 0
    tasks = json.loads(out.read_text())
    assert len(tasks) == SHORT_SECONDS // 2
    config = out.with_suffix(".xml").read_text()
    assert "A1-A2" in config and "B'1-B'2" in config  # bipolar derivations of the sEEG shafts
    data = tasks[0]["data"]
    assert data["patient"] == "P01" and data["recording"] == "sub-p01_task-rest_ieeg.edf"
    with WindowStore(tmp_path / "s" / data["store"]) as store:
        assert data["window_id"] in set(store.ids)
        assert store.provenance["montage"] == "bipolar"
        assert store.provenance["preprocess"]["line_freq_hz"] == 50.0  # from the BIDS sidecar
        assert store.ch_names == data["channels"].split(", ")
    assert "20 new tasks" in capsys.readouterr().out


def test_candidate_pool_and_events_as_annotations(bids_root, tmp_path):
    out = tmp_path / "tasks.json"
    args = ["--patient", "P01", "--dry-run", "--out", out, "--store-dir", tmp_path, "--max-windows", 7]
    assert run_cli(bids_root, *args, "--events", "annotations") == 0
    tasks = json.loads(out.read_text())
    assert len(tasks) == 7
    choices = [t["annotations"][0]["result"][-1]["value"]["choices"][0] for t in tasks]
    assert set(choices) <= {"Spike", "No spike"} and "Spike" in choices


def test_parallel_conversion_gives_the_same_stores(tmp_path):
    for k in range(2):
        write_edf(tmp_path / "in" / f"night{k}.edf", PATIENTS["C"].with_(seed=k), 20)
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert run_cli(tmp_path / "in", "--patient", "P", "--dry-run", "--out", one, "--store-dir", tmp_path / "a") == 0
    args = ["--patient", "P", "--dry-run", "--out", two, "--store-dir", tmp_path / "b", "--jobs", 2]
    assert run_cli(tmp_path / "in", *args) == 0
    assert json.loads(one.read_text()) == json.loads(two.read_text())


def test_help_explains_options_with_examples():
    result = subprocess.run(
        [sys.executable, "-m", "converters.import", "--help"], capture_output=True, text=True, check=True
    )
    for word in ("--max-windows", "--backend-url", "--dry-run", "LABEL_STUDIO_URL", "examples:"):
        assert word in result.stdout


def bad(tmp_path, capsys, *args):
    code = run_cli(*args, "--dry-run", "--store-dir", tmp_path / "stores")
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_unsupported_missing_and_empty_inputs(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert "notes.txt" in bad(tmp_path, capsys, tmp_path / "notes.txt", "--patient", "P")
    assert "no such file" in bad(tmp_path, capsys, tmp_path / "absent.edf", "--patient", "P")
    (tmp_path / "empty").mkdir()
    assert "no recording found" in bad(tmp_path, capsys, tmp_path / "empty", "--patient", "P")


def test_truncated_and_zero_length_edf(tmp_path, capsys):
    path = write_edf(tmp_path / "rec.edf", PATIENTS["B"], 10)
    data = path.read_bytes()
    (tmp_path / "cut.edf").write_bytes(data[: len(data) - 5000])
    assert "cut.edf" in bad(tmp_path, capsys, tmp_path / "cut.edf", "--patient", "P")
    header_bytes = int(data[184:192])
    header = bytearray(data[:header_bytes])
    header[236:244] = b"0".ljust(8)
    (tmp_path / "zero.edf").write_bytes(bytes(header))
    assert "zero.edf" in bad(tmp_path, capsys, tmp_path / "zero.edf", "--patient", "P")


def test_all_flat_or_nan_channels(tmp_path, capsys):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros((4, 10_000), np.float32)
        f.attrs["sfreq"] = 1000.0
    err = bad(tmp_path, capsys, path, "--patient", "P")
    assert "flat.h5" in err and "all channels are flat" in err


def test_sampling_rates_differ_between_files(tmp_path, capsys):
    write_hdf5(tmp_path / "in" / "a.h5", PATIENTS["A"], 10)
    write_hdf5(tmp_path / "in" / "b.h5", PATIENTS["B"], 10)
    err = bad(tmp_path, capsys, tmp_path / "in", "--patient", "P")
    assert "sampling rates differ" in err and "a.h5: 2048 Hz" in err and "b.h5: 1024 Hz" in err


def test_unknown_channel_is_named(tmp_path, capsys):
    path = write_hdf5(tmp_path / "a.h5", PATIENTS["C"], 10)
    err = bad(tmp_path, capsys, path, "--patient", "P", "--channels", "Am'1,Q7")
    assert "unknown channel(s) Q7" in err and "a.h5" in err


def test_missing_sampling_rate_in_hdf5_says_which_option(tmp_path, capsys):
    path = tmp_path / "raw.h5"
    with h5py.File(path, "w") as f:
        f["signal"] = np.random.default_rng(0).standard_normal((3, 5000)).astype(np.float32)
    assert "--sfreq" in bad(tmp_path, capsys, path, "--patient", "P")
    assert run_cli(path, "--patient", "P", "--sfreq", "500", "--dry-run", "--store-dir", tmp_path / "s") == 0


def test_real_unreadable_blackrock_file(real_data_dir, tmp_path, capsys):
    if real_data_dir is None:
        pytest.skip("the real recordings folder (SPIKE_AL_REAL_DATA) is absent")
    path = real_data_dir / "mne-testing-data" / "nsx" / "test_NEURALSG_raw.ns3"
    assert "test_NEURALSG_raw.ns3" in bad(tmp_path, capsys, path, "--patient", "P")
