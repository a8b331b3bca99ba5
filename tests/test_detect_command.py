"""``python -m ls_backend.detect``: bad input refused before any scoring (one line, exit 2, nothing written), the
model and its threshold resolved, stores found, and labeled windows overriding the model's events."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import TINY, toy_windows

import ls_backend.detect.command as command
from converters.convert import convert_recording
from converters.synthetic import PATIENTS, make_events, write_edf
from converters.windows import WindowStore
from ls_backend.detect.command import main
from ls_backend.detect.events import Event
from ls_backend.detect.exports import latest_detection, read_table
from ls_backend.detect.reviewed import apply_labels, labels_of_store, store_key
from ls_backend.labels import TaskLabel
from ls_backend.model.checkpoints import save_checkpoint
from ls_backend.model.estimator import SpikeDetector
from ls_backend.model.training import dense_targets
from ls_backend.registry import ModelRegistry

# -- data ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> Path:
    """WINDOW_STORE_DIR with one patient's store ``P/rec.h5`` (20 s of synthetic patient C at the model rate)."""
    root = tmp_path_factory.mktemp("stores")
    source = write_edf(root.parent / f"{root.name}.edf", PATIENTS["C"], 20)
    convert_recording(source, root / "P" / "rec.h5")
    return root


@pytest.fixture(scope="module")
def store_path(stores) -> Path:
    return stores / "P" / "rec.h5"


def tiny_model(**changes) -> SpikeDetector:
    X, y = toy_windows()
    return SpikeDetector(**(TINY | changes)).fit(X, y)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small trained model at the stores' rate, with its operating point at 0.37."""
    return save_checkpoint(tmp_path_factory.mktemp("model") / "m.pt", tiny_model(threshold=0.37), {"version": "m1"})


@pytest.fixture(autouse=True)
def environment(tmp_path, stores, monkeypatch):
    """The backend's settings for a test: its own MODEL_DIR, the shared stores, no Label Studio, no Redis."""
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("WINDOW_STORE_DIR", str(stores))
    for name in ("LABEL_STUDIO_API_KEY", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_scoring(monkeypatch):
    """Fail the test if anything is scored (every check comes first)."""

    def scored(*args, **kwargs):
        raise AssertionError("scoring started before every input was checked")

    monkeypatch.setattr(command, "detect_recording", scored)
    monkeypatch.setattr(command, "run_on_queue", scored)


def plan(*argv: str) -> command.Plan:
    args = command.build_parser().parse_args(list(argv))
    return command.plan_detection(args, command.Settings.from_env(), "test")


# -- bad input: one line naming it, exit 2, nothing written --------------------------------------------------------


def refused(capsys, out: Path, *argv: str) -> str:
    """Run the command on bad input; check exit 2, one line on stderr, no output folder; return the line."""
    before = listing(out.parent)
    assert command.main([*argv, "--out", str(out)] if "--out" not in argv else list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m ls_backend.detect: error: ") and "\n" not in err, err
    assert listing(out.parent) == before, "the command left something behind"
    return err


def listing(folder: Path) -> dict[str, list[str]]:
    """Every path below ``folder`` (none when it does not exist)."""
    return {str(path): sorted(p.name for p in path.iterdir()) for path in [folder, *folder.rglob("*")] if path.is_dir()}


def test_a_missing_store(no_scoring, capsys, tmp_path, checkpoint):
    err = refused(capsys, tmp_path / "out", str(tmp_path / "nope.h5"), "--model", str(checkpoint))
    assert "nope.h5: no such file or folder" in err


def test_a_file_that_is_not_a_window_store(no_scoring, capsys, tmp_path, checkpoint):
    (tmp_path / "rec.h5").write_text("not HDF5")
    err = refused(capsys, tmp_path / "out", str(tmp_path / "rec.h5"), "--model", str(checkpoint))
    assert "rec.h5: not a window store" in err and "converters.import" in err


def test_a_folder_without_stores(no_scoring, capsys, tmp_path, checkpoint):
    (tmp_path / "empty").mkdir()
    err = refused(capsys, tmp_path / "out", str(tmp_path / "empty"), "--model", str(checkpoint))
    assert "empty: no window store (*.h5)" in err


def test_a_corrupt_checkpoint(no_scoring, capsys, tmp_path, store_path, checkpoint):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(checkpoint.read_bytes()[:2000])
    err = refused(capsys, tmp_path / "out", str(store_path), "--model", str(broken))
    assert f"--model: {broken.resolve()}: corrupt or unreadable checkpoint" in err and "cold-start" in err


def test_a_checkpoint_of_another_architecture(no_scoring, capsys, tmp_path, store_path, checkpoint):
    payload = torch.load(checkpoint, weights_only=True)
    payload["params_json"] = payload["params_json"].replace('"width": 8', '"width": 16')
    other = tmp_path / "wider.pt"
    torch.save(payload, other)
    err = refused(capsys, tmp_path / "out", str(store_path), "--model", str(other))
    assert "wider.pt: inconsistent checkpoint" in err


def test_a_project_without_a_model_points_to_cold_start(no_scoring, capsys, tmp_path, store_path):
    err = refused(capsys, tmp_path / "models" / "7" / "detections", str(store_path), "--project", "7")
    assert "project 7 has no model" in err and "--model cold-start" in err


def test_a_bad_project_id(no_scoring, capsys, tmp_path, store_path):
    assert "--project: project must be a Label Studio project id" in refused(
        capsys, tmp_path / "out", str(store_path), "--project", "seven"
    )


@pytest.mark.parametrize("threshold", ["0", "1", "1.5", "-0.1", "nan"])
def test_a_threshold_outside_zero_one(no_scoring, capsys, tmp_path, store_path, threshold):
    err = refused(capsys, tmp_path / "out", str(store_path), "--model", "cold-start", "--threshold", threshold)
    assert "--threshold must be in (0, 1)" in err


def test_an_output_folder_holding_something_else(no_scoring, capsys, tmp_path, store_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("keep me")
    err = refused(capsys, out, str(store_path), "--model", "cold-start")
    assert "--out" in err and "thesis" in err
    assert (out / "chapter1.tex").read_text() == "keep me"


def test_a_store_at_another_rate_than_the_model(no_scoring, capsys, tmp_path, store_path):
    other_rate = save_checkpoint(tmp_path / "512.pt", tiny_model(sfreq=512.0), {})
    err = refused(capsys, tmp_path / "out", str(store_path), "--model", str(other_rate))
    assert "rec.h5: sampled at 256 Hz, the model at 512 Hz" in err


def test_two_recordings_with_one_name(no_scoring, capsys, tmp_path, store_path):
    twin = tmp_path / "other" / "rec.h5"
    twin.parent.mkdir()
    twin.write_bytes(store_path.read_bytes())
    err = refused(capsys, tmp_path / "out", str(store_path), str(twin), "--model", "cold-start")
    assert "two recordings named 'rec'" in err


def test_out_is_required_without_a_project(no_scoring, capsys, store_path):
    assert command.main([str(store_path), "--model", "cold-start"]) == 2
    assert "--out is required with --model" in capsys.readouterr().err


def test_queue_needs_redis(no_scoring, capsys, tmp_path, store_path):
    err = refused(capsys, tmp_path / "out", str(store_path), "--model", "cold-start", "--queue")
    assert "--queue needs REDIS_URL" in err


def test_queue_needs_redis_to_answer(no_scoring, capsys, tmp_path, store_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    err = refused(capsys, tmp_path / "out", str(store_path), "--model", "cold-start", "--queue")
    assert "--queue: Redis at REDIS_URL=redis://127.0.0.1:1/0 does not answer" in err


def test_labels_need_a_project_and_a_key(no_scoring, capsys, tmp_path, store_path, checkpoint):
    err = refused(capsys, tmp_path / "out", str(store_path), "--model", "cold-start", "--labels")
    assert "--labels needs --project" in err
    ModelRegistry(tmp_path / "models").promote(4, tiny_model(), {})
    err = refused(capsys, tmp_path / "out", str(store_path), "--project", "4", "--labels")
    assert "--labels needs LABEL_STUDIO_API_KEY" in err


def test_neither_or_both_models(capsys, store_path, checkpoint):
    for argv in ([str(store_path)], [str(store_path), "--project", "3", "--model", str(checkpoint)]):
        with pytest.raises(SystemExit) as exit_:
            command.main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and ("--project" in err and "--model" in err)


def test_the_module_runs_and_explains_every_option(tmp_path, store_path, repo_root):
    run = subprocess.run([sys.executable, "-m", "ls_backend.detect", "--help"], capture_output=True, text=True,
                         cwd=repo_root, check=True)  # fmt: skip
    for option in ("--project", "--model", "cold-start", "--out", "--threshold", "--labels", "--queue", "examples:"):
        assert option in run.stdout
    bad = subprocess.run([sys.executable, "-m", "ls_backend.detect", str(store_path), "--model", "cold-start",
                          "--out", str(tmp_path / "o"), "--threshold", "2"], capture_output=True, text=True,
                         cwd=repo_root)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and not (tmp_path / "o").exists()


# -- what a good command line resolves to --------------------------------------------------------------------------


def test_the_threshold_defaults_to_the_models_operating_point(no_scoring, tmp_path, store_path, checkpoint):
    assert plan(str(store_path), "--model", str(checkpoint), "--out", str(tmp_path / "o")).threshold == 0.37
    assert plan(str(store_path), "--model", "cold-start", "--out", str(tmp_path / "o")).threshold == 0.5
    chosen = plan(str(store_path), "--model", str(checkpoint), "--out", str(tmp_path / "o"), "--threshold", "0.2")
    assert chosen.threshold == 0.2 and chosen.model.checkpoint == str(checkpoint.resolve())
    assert chosen.model.version == "m1"


def test_a_project_detects_with_its_serving_model_into_its_folder(no_scoring, tmp_path, store_path):
    registry = ModelRegistry(tmp_path / "models")
    registry.promote(3, tiny_model(), {})
    version = registry.promote(3, tiny_model(threshold=0.6), {})
    planned = plan(str(store_path), "--project", "3")
    state = registry.state(3)
    assert planned.model.checkpoint == str(state.checkpoint(version).resolve())
    assert planned.model.version == version and planned.threshold == 0.6
    assert planned.out == state.dir / "detections" and planned.state == state and planned.labels is None


def test_folders_are_searched_recursively_and_each_store_counted_once(no_scoring, tmp_path, stores, store_path):
    nested = stores / "P" / "night2" / "rec2.h5"
    nested.parent.mkdir(exist_ok=True)
    nested.write_bytes(store_path.read_bytes())
    try:
        planned = plan(str(stores), str(store_path), "--model", "cold-start", "--out", str(tmp_path / "o"))
        assert [p.resolve() for p in planned.stores] == [nested.resolve(), store_path.resolve()]  # path order
    finally:
        nested.unlink()


def test_labels_of_the_detected_stores_are_fetched(no_scoring, tmp_path, stores, store_path, monkeypatch):
    ModelRegistry(tmp_path / "models").promote(5, tiny_model(), {})
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "token")
    with WindowStore(store_path) as store:
        ids = list(store.ids[:3])
    labels = [label(1.0, window_id=ids[0]), label(0.0, window_id=ids[1]), label(1.0, store="Q/rec.h5"),
              label(1.0, window_id="elsewhere-000000000-2000")]  # fmt: skip
    asked = []
    monkeypatch.setattr(command.studio, "connect", lambda url, key: "client")
    monkeypatch.setattr(command, "project_labels", lambda client, state, _: asked.append((client, state.key)) or labels)
    planned = plan(str(store_path), "--project", "5")  # labels by default with a project and an API key
    assert asked == [("client", "5")]
    assert planned.labels == {store_path: labels[:2]} and planned.n_labels == 2
    assert plan(str(store_path), "--project", "5", "--no-labels").labels is None


def test_labels_that_cannot_be_read_are_bad_input(no_scoring, capsys, tmp_path, store_path, monkeypatch):
    ModelRegistry(tmp_path / "models").promote(5, tiny_model(), {})
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "token")
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:1")
    err = refused(capsys, tmp_path / "models" / "5" / "detections", str(store_path), "--project", "5")
    assert "127.0.0.1:1" in err and "--no-labels" in err


# -- labeled windows override the model ----------------------------------------------------------------------------

WINDOW_SECONDS = 2.0


def label(target: float, onset: float = 0.0, regions=(), window_id: str = "w", store: str = "P/rec.h5") -> TaskLabel:
    return TaskLabel(task_id=1, window_id=window_id, store=store, onset_seconds=onset, target=target,
                     regions=[(start, end, 1.0) for start, end in regions])  # fmt: skip


def event(peak: float, duration: float = 0.08) -> Event:
    return Event(onset=peak - duration / 2, duration=duration, peak=peak, peak_channel="A1", probability=0.8,
                 channels={"A1": 0.8}, model_version="m1")  # fmt: skip


def test_a_no_spike_window_removes_the_events_peaking_in_it():
    events = [event(1.0), event(2.5), event(4.1)]
    kept = apply_labels(events, [label(0.0, onset=2.0), label(0.0, onset=10.0)], WINDOW_SECONDS)
    assert [e.peak for e in kept] == [1.0, 4.1] and all(e.reviewed == "" for e in kept)


def test_a_spike_window_confirms_its_events_and_adds_none_where_one_was_found():
    kept = apply_labels([event(1.0), event(2.5)], [label(1.0, onset=2.0, regions=[(2.45, 2.55)])], WINDOW_SECONDS)
    assert [(e.peak, e.reviewed, e.probability) for e in kept] == [(1.0, "", 0.8), (2.5, "confirmed", 0.8)]


def test_a_confirmed_spike_wins_over_an_overlapping_no_spike_window():
    labels = [label(0.0, onset=2.0), label(1.0, onset=3.0)]  # overlapping windows (a stride of 1 s)
    kept = apply_labels([event(2.5), event(3.5)], labels, WINDOW_SECONDS)
    assert [(e.peak, e.reviewed) for e in kept] == [(3.5, "confirmed")]


def test_labeled_regions_the_model_missed_become_confirmed_events():
    labels = [label(1.0, onset=4.0, regions=[(4.50, 4.60), (5.20, 5.30)]),
              label(1.0, onset=4.0, regions=[(4.55, 4.65)])]  # fmt: skip  # a second clinician, the same spike
    kept = apply_labels([event(5.25)], labels, WINDOW_SECONDS)
    assert [(round(e.onset, 3), round(e.duration, 3), e.reviewed) for e in kept] == [
        (4.5, 0.15, "confirmed"),
        (5.21, 0.08, "confirmed"),
    ]
    added = kept[0]
    assert added.probability == 1.0 and added.peak == pytest.approx(4.575) and added.peak_channel == ""


def test_a_spike_window_without_regions_or_events_becomes_one_event():
    kept = apply_labels([event(9.0)], [label(1.0, onset=4.0)], WINDOW_SECONDS)
    assert [(e.onset, e.duration, e.reviewed) for e in kept] == [(4.0, 2.0, "confirmed"), (8.96, 0.08, "")]


def test_an_undecided_window_leaves_the_model_alone():
    labels = [label(0.5, onset=0.0, regions=[(0.2, 0.3)])]  # "Unsure", or one "Spike" and one "No spike"
    assert apply_labels([event(1.0)], labels, WINDOW_SECONDS) == [event(1.0)]
    assert apply_labels([], labels, WINDOW_SECONDS) == []


def test_an_added_event_peaks_at_the_largest_deflection(store_path):
    with WindowStore(store_path) as store:
        signal = store.file["signal"][:, 256:768] / store.channel_scale_uv[:, None]
        channel, sample = np.unravel_index(np.argmax(np.abs(signal)), signal.shape)
        (added,) = apply_labels([], [label(1.0, onset=1.0)], WINDOW_SECONDS, store)
        assert added.peak == pytest.approx(1.0 + sample / store.sfreq)
        assert added.peak_channel == store.ch_names[channel] and added.channels == {added.peak_channel: 1.0}


def test_labels_match_a_store_by_its_key_and_window_ids(stores, store_path, tmp_path):
    assert store_key(store_path, stores) == "P/rec.h5"
    assert store_key(tmp_path / "rec.h5", stores) is None
    with WindowStore(store_path) as store:
        here, other = label(1.0, window_id=store.ids[0]), label(1.0, window_id=store.ids[1], store="Q/rec.h5")
        unknown = label(1.0, window_id="0123456789ab-000000000-2000")
        assert labels_of_store([here, other, unknown], store, "P/rec.h5") == [here]
        assert labels_of_store([here, other, unknown], store, None) == [here, other]  # outside WINDOW_STORE_DIR


def test_events_keep_their_fields_through_the_labels():
    (kept,) = apply_labels([event(1.0)], [label(1.0)], WINDOW_SECONDS)
    assert kept == replace(event(1.0), reviewed="confirmed")


# -- end to end: a synthetic patient with truth, converted, detected --------------------------------------------

DURATION_SECONDS = 180
MATCH_SECONDS = 0.1  # a detection finds a true spike when it peaks this close to it, on a channel it involves


@pytest.fixture(scope="module")
def patient(tmp_path_factory) -> tuple[Path, list]:
    """Three minutes of synthetic patient C (spike-waves, 12/min) as a window store, and its true spikes."""
    root = tmp_path_factory.mktemp("patient")
    profile = PATIENTS["C"].with_(seed=3)
    source = write_edf(root / "night1.edf", profile, DURATION_SECONDS)
    store = Path(convert_recording(source, root / "stores" / "P01" / "night1.h5").store)
    truth = [event for event in make_events(profile, DURATION_SECONDS) if event.is_spike]
    return store, truth


def recovered(rows: list[dict[str, str]], truth: list) -> tuple[float, float]:
    """Recall and precision of detected rows against the true spikes (greedy one-to-one matching by time)."""
    unmatched = list(range(len(rows)))
    found = 0
    for spike in truth:
        for k in unmatched:
            contacts = set(rows[k]["channel"].split("-"))  # a bipolar channel involves both of its contacts
            if abs(float(rows[k]["peak"]) - spike.peak_seconds) <= MATCH_SECONDS and contacts & set(spike.channels):
                unmatched.remove(k)
                found += 1
                break
    return found / len(truth), found / max(1, len(rows))


@pytest.fixture(scope="module")
def trained(patient, tmp_path_factory) -> Path:
    """A small model trained on the patient's windows with the truth's spikes as labels (a checkpoint)."""
    store, truth = patient
    with WindowStore(store) as opened:
        X, onsets, sfreq = opened.read_rows(np.arange(len(opened))), opened.starts / opened.sfreq, opened.sfreq
    regions = [(spike.onset_seconds, spike.onset_seconds + spike.duration_seconds) for spike in truth]
    dense = np.stack([dense_targets(regions, X.shape[2], sfreq, onset) for onset in onsets])
    model = SpikeDetector(**(TINY | {"epochs": 5})).fit(
        X, (dense.max(axis=1) > 0.5).astype(np.float32), dense_targets=dense
    )
    return save_checkpoint(tmp_path_factory.mktemp("trained") / "p01.pt", model, {"version": "p01-trained"})


@pytest.mark.parametrize("model", ["cold-start", "trained"])
def test_the_command_recovers_a_synthetic_patients_spikes(model, patient, tmp_path, capsys, request):
    store, truth = patient
    out = tmp_path / "P01"
    spec = model if model == "cold-start" else str(request.getfixturevalue("trained"))
    assert main([str(store), "--model", spec, "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    for name in ("night1_events.tsv", "night1_events.json", "night1_events.csv", "spike_rates.tsv", "report.png"):
        assert (out / name).is_file(), name
    rows = read_table(out / "night1_events.tsv")
    recall, precision = recovered(rows, truth)
    assert len(truth) >= 20 and recall >= 0.8 and precision >= 0.8, (len(truth), len(rows), recall, precision)
    assert {row["model_version"] for row in rows} == {"cold-start" if model == "cold-start" else "p01-trained"}


def test_a_rerun_replaces_the_previous_output_whole(patient, tmp_path, monkeypatch):
    store, _ = patient
    out = tmp_path / "P01"
    assert main([str(store), "--model", "cold-start", "--out", str(out), "--threshold", "0.9"]) == 0
    strict = read_table(out / "night1_events.tsv")
    assert main([str(store), "--model", "cold-start", "--out", str(out), "--threshold", "0.3"]) == 0
    assert read_table(out / "night1_events.tsv") != strict  # the more sensitive run's events, not the old ones
    assert json.loads((out / "detection.json").read_text())["threshold"] == 0.3
    before = listing(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(command, "detect_recording", broken)
    with pytest.raises(RuntimeError):
        main([str(store), "--model", "cold-start", "--out", str(out), "--threshold", "0.5"])
    assert listing(tmp_path) == before and json.loads((out / "detection.json").read_text())["threshold"] == 0.3


def test_a_project_run_applies_its_labels_and_tells_the_page(patient, tmp_path, monkeypatch):
    store, truth = patient
    registry = ModelRegistry(tmp_path / "models")
    version = registry.promote(6, tiny_model(), {})
    monkeypatch.setenv("WINDOW_STORE_DIR", str(store.parent.parent))
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "token")
    spike = truth[0]
    with WindowStore(store) as opened:
        starts = opened.starts / opened.sfreq
        ids = list(opened.ids)
    first = int(np.searchsorted(starts, spike.peak_seconds, side="right") - 1)
    quiet = len(starts) - 1  # the last window: labeled "No spike"
    drawn = [(spike.onset_seconds, spike.peak_seconds + 0.05, 1.0)]  # the clinician's region around the spike
    labels = [
        TaskLabel(1, ids[first], "P01/night1.h5", starts[first], 1.0, drawn),
        TaskLabel(2, ids[quiet], "P01/night1.h5", starts[quiet], 0.0),
    ]
    monkeypatch.setattr(command.studio, "connect", lambda url, key: "client")
    monkeypatch.setattr(command, "project_labels", lambda client, state, store_dir: labels)
    assert main([str(store), "--project", "6", "--threshold", "0.5"]) == 0
    state = registry.state(6)
    out = state.dir / "detections"
    assert latest_detection(state) == out.resolve()
    rows = read_table(out / "night1_events.tsv")
    confirmed = [row for row in rows if row["reviewed"] == "confirmed"]
    assert confirmed and all(starts[first] <= float(row["peak"]) < starts[first] + 2.0 for row in confirmed)
    assert not [row for row in rows if starts[quiet] <= float(row["peak"]) < starts[quiet] + 2.0]
    assert {row["model_version"] for row in rows if row["reviewed"] != "confirmed"} <= {version}
