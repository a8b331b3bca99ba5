"""``python -m converters.import``: dry runs, parallel conversion, every bad input, and failed imports into an
existing project of the real Label Studio (all or nothing)."""

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import serving
from label_studio_sdk import LabelStudio as LabelStudioClient
from studio_server import free_port

import converters.cli as cli
from converters import studio
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
    config = (tmp_path / "tasks.label_config.xml").read_text()  # <FILE stem>.label_config.xml, next to FILE
    assert "A1-A2" in config and "B'1-B'2" in config  # bipolar derivations of the sEEG shafts
    assert 'dataRange="-75,75"' in config  # one amplitude scale, from the patient's robust amplitude
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


# -- a failed run leaves the window stores as they were ------------------------------------------------------


def store_files(folder):
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in folder.iterdir()}


def test_failed_run_restores_replaced_stores_and_removes_new_ones(tmp_path, monkeypatch, capsys):
    for k in range(2):
        write_edf(tmp_path / "in" / f"night{k}.edf", PATIENTS["C"].with_(seed=k), 10)
    stores, out = tmp_path / "stores", tmp_path / "tasks.json"
    assert run_cli(tmp_path / "in" / "night0.edf", "--patient", "P", "--dry-run", "--store-dir", stores) == 0
    before = store_files(stores / "P")
    assert list(before) == ["night0.h5"]
    real_make_tasks = cli.make_tasks

    def fails_on_night1(*args, **kwargs):
        if kwargs["recording"] == "night1.edf":
            raise OSError("Can't read data (truncated file)")
        yield from real_make_tasks(*args, **kwargs)

    monkeypatch.setattr(cli, "make_tasks", fails_on_night1)
    err = bad(tmp_path, capsys, tmp_path / "in", "--patient", "P", "--out", out)
    assert "night1.h5" in err and "truncated file" in err
    assert store_files(stores / "P") == before  # night0.h5 is the same file again, night1.h5 is gone
    assert not out.exists() and not out.with_name(out.name + ".tmp").exists()


# -- a failed import into an existing project leaves it as it was (real Label Studio) ------------------------

RECORDING_STORE = "sub-p01_task-rest_ieeg.h5"


def tasks_of(client, project_id):
    """``{task id: data}`` of every task of the project."""
    return {task.id: task.data for task in client.tasks.list(project=project_id, fields="task_only")}


@dataclass
class ExistingProject:
    """A project with the first 5 windows of ``bids_root`` imported, and what it held then."""

    id: int
    title: str
    store_dir: Path
    tasks: dict
    store: tuple

    def store_file(self):
        path = self.store_dir / "P01" / RECORDING_STORE
        return path.stat().st_ino, path.stat().st_mtime_ns


def import_into(label_studio, source, project, *args):
    return main(
        [str(source), "--patient", "P01", "--project", project.title, "--url", label_studio.url,
         "--api-key", label_studio.token, "--store-dir", str(project.store_dir), *map(str, args)]
    )  # fmt: skip


@pytest.fixture
def existing_project(label_studio, studio_client, bids_root, tmp_path) -> Iterator[ExistingProject]:
    project = ExistingProject(0, f"Spikes atomic {uuid.uuid4().hex[:6]}", tmp_path / "stores", {}, ())
    assert import_into(label_studio, bids_root, project, "--max-windows", 5) == 0
    project.id = next(p.id for p in studio_client.projects.list(title=project.title) if p.title == project.title)
    project.tasks = tasks_of(studio_client, project.id)
    project.store = project.store_file()
    assert len(project.tasks) == 5
    yield project
    studio.delete_project(studio_client, project.id)


def assert_as_before(client, project):
    assert tasks_of(client, project.id) == project.tasks  # the same ids with the same data, and no other
    assert project.store_file() == project.store  # the store the tasks were made from is back in place
    assert sorted(path.name for path in (project.store_dir / "P01").iterdir()) == [RECORDING_STORE]


def error_line(capsys):
    """The command's one error line (the progress bars also write to stderr, before it)."""
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and err.count("error: ") == 1 and "Traceback" not in err
    return line


def fail_midway(monkeypatch, error):
    """The task generator raises ``error`` at the tenth window, after a few batches were imported."""
    real_make_tasks = cli.make_tasks

    def tasks_then_error(*args, **kwargs):
        for k, task in enumerate(real_make_tasks(*args, **kwargs)):
            if k == 9:
                raise error
            yield task

    monkeypatch.setattr(cli, "make_tasks", tasks_then_error)


def test_task_generator_failing_midway(label_studio, studio_client, bids_root, existing_project, monkeypatch, capsys):
    fail_midway(monkeypatch, OSError("Can't read data (truncated file)"))
    assert import_into(label_studio, bids_root, existing_project, "--batch-size", 2) == 2
    assert_as_before(studio_client, existing_project)
    err = error_line(capsys)
    assert RECORDING_STORE in err and "truncated file" in err
    deleted = re.search(r"the (\d+) tasks of the earlier batches were deleted", err)
    assert deleted and int(deleted.group(1)) >= 2


@pytest.fixture
def setup_failing_backend() -> Iterator[str]:
    """An ML backend whose /health answers UP and whose /setup fails: Label Studio refuses to add it."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/health":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"status": "UP"}']
        start_response("500 Internal Server Error", [("Content-Type", "application/json")])
        return [b'{"error": "setup failed"}']

    with serving(app) as url:
        yield url


def raise_in_backend_connection(monkeypatch, error):
    def connect_ml_backend(*args, **kwargs):
        raise error

    monkeypatch.setattr(studio, "connect_ml_backend", connect_ml_backend)


def test_backend_check_fails_only_when_certain(caplog):
    client = LabelStudioClient(base_url="http://localhost:1", api_key="unused")  # only its URL is read

    def needs_login(environ, start_response):
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"authentication required"]

    with serving(needs_login) as url, pytest.raises(studio.StudioError, match="HTTP 401.*BASIC_AUTH_USER"):
        studio.check_ml_backend(client, url)
    with pytest.raises(studio.StudioError, match="expected http"):
        studio.check_ml_backend(client, "localhost:9090")
    with caplog.at_level("WARNING", "converters.studio"):  # may be reachable from the server (a compose service)
        studio.check_ml_backend(client, "http://spike-backend.invalid:9090")
    assert "Label Studio checks it from its server" in caplog.text


@pytest.mark.parametrize(
    ("error", "where"),
    [(KeyboardInterrupt(), "tasks"), (KeyboardInterrupt(), "backend"), (SystemExit(143), "tasks")],
    ids=["ctrl-c-building-tasks", "ctrl-c-connecting-backend", "system-exit-building-tasks"],
)
def test_interrupted_import(
    label_studio, studio_client, bids_root, existing_project, setup_failing_backend, monkeypatch, capsys, error, where
):
    if where == "tasks":
        fail_midway(monkeypatch, error)
    else:
        raise_in_backend_connection(monkeypatch, error)
    args = ["--batch-size", 2, "--backend-url", setup_failing_backend]
    try:
        code = import_into(label_studio, bids_root, existing_project, *args)
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the command")
    assert code == (130 if isinstance(error, KeyboardInterrupt) else 143)
    assert_as_before(studio_client, existing_project)
    err = error_line(capsys)
    assert err.startswith("error: interrupted (Ctrl-C)" if code == 130 else "error: stopped (exit code 143)")
    undone = "imported by this run were deleted" if where == "backend" else "of the earlier batches were deleted"
    assert undone in err


def test_unreachable_backend_fails_before_importing(
    label_studio, studio_client, bids_root, existing_project, monkeypatch, capsys
):
    calls = []
    monkeypatch.setattr(cli, "_convert_all", lambda *args: calls.append("convert"))
    monkeypatch.setattr(studio, "import_tasks", lambda *args, **kwargs: calls.append("import"))
    url = f"http://127.0.0.1:{free_port()}"
    assert import_into(label_studio, bids_root, existing_project, "--backend-url", url) == 2
    assert_as_before(studio_client, existing_project)
    assert calls == []  # failed before converting anything
    assert error_line(capsys).startswith(f"error: the ML backend {url} is not reachable")


def test_backend_refused_after_import_rolls_back(
    label_studio, studio_client, bids_root, existing_project, setup_failing_backend, capsys
):
    args = ["--batch-size", 2, "--backend-url", setup_failing_backend]
    assert import_into(label_studio, bids_root, existing_project, *args) == 2
    assert_as_before(studio_client, existing_project)
    err = error_line(capsys)
    assert f"could not add the ML backend {setup_failing_backend}" in err
    assert "the 15 tasks imported by this run were deleted" in err
