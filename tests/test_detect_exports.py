"""Detection outputs: events loaded back onto the original recording with MNE, tables and sidecars that agree,
spike rates, the report figure, and an output folder that is written whole or not at all."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mne
import numpy as np
import pytest
from detect_helpers import MODEL_VERSION, synthetic_detection

import ls_backend.detect.exports as exports
from converters.windows import WindowStore
from ls_backend.detect.events import Event
from ls_backend.detect.exports import (
    EVENT_COLUMNS,
    HOURLY_COLUMNS,
    RATE_COLUMNS,
    OutputExistsError,
    RecordingEvents,
    check_output_dir,
    hourly_rate_rows,
    read_table,
    recording_stem,
    shaft_of,
    shafts_of,
    spike_rate_rows,
    write_detection_output,
)
from ls_backend.detect.report import Detection, spike_snippets

SECONDS = 60
INFO = {
    "model_version": MODEL_VERSION,
    "model": "project 4",
    "threshold": 0.5,
    "command": "python -m ls_backend.detect",
}


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A synthetic EDF, its window store (bipolar), and one event per true spike."""
    made = synthetic_detection(tmp_path_factory.mktemp("recording"), SECONDS)
    with WindowStore(made.store) as store:
        yield made.edf, store, made.events


@pytest.fixture
def written(recording, tmp_path):
    edf, store, events = recording
    rec = RecordingEvents.from_store(store, events)
    return write_detection_output(tmp_path / "detections", [rec], INFO), rec, edf


def test_the_recording_knows_its_original_channels(recording):
    _, store, events = recording
    rec = RecordingEvents.from_store(store, events)
    assert rec.stem == "sub-04_task-rest" and recording_stem("night1.h5") == "night1"
    assert rec.montage == "bipolar" and rec.meas_date == "2024-01-01T08:00:00+00:00"
    assert rec.duration_seconds == pytest.approx(SECONDS)
    assert rec.original_channels()["Am'3-Am'4"] == ("Am'3", "Am'4")
    assert set(rec.original_channels()) == set(rec.ch_names)


def test_mne_loads_each_spike_onto_the_original_recording_at_its_time_and_channels(written):
    out, rec, edf = written
    raw = mne.io.read_raw_edf(edf, preload=True, verbose="error")
    raw.set_annotations(mne.read_annotations(out / "sub-04_task-rest_annotations.txt"))
    annotations = raw.annotations
    assert annotations.orig_time == raw.info["meas_date"]  # the recording's start was read back
    assert len(annotations) == len(rec.events) > 5
    originals = rec.original_channels()
    for event, onset, duration, description, names in zip(
        rec.events, annotations.onset, annotations.duration, annotations.description, annotations.ch_names
    ):
        assert onset - raw.first_time == pytest.approx(event.onset, abs=1e-6)
        assert duration == pytest.approx(event.duration)
        assert description == ("spike/confirmed" if event.reviewed else "spike")
        assert names[:2] == originals[event.peak_channel]  # the peak channel's two contacts first
        assert set(names) == {c for channel in event.channels for c in originals[channel]}
        # the spike is where the annotation says: its peak contact deflects far beyond the background there
        contact = raw.get_data(picks=names[0], units="uV")[0]
        at_peak = np.ptp(contact[raw.time_as_index(event.peak - 0.03)[0] : raw.time_as_index(event.peak + 0.03)[0]])
        assert at_peak > 3 * np.median(np.abs(contact - np.median(contact)))


def test_the_events_tables_and_their_sidecar_agree(written):
    out, rec, _ = written
    tsv = read_table(out / "sub-04_task-rest_events.tsv")
    with open(out / "sub-04_task-rest_events.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    sidecar = json.loads((out / "sub-04_task-rest_events.json").read_text())
    assert list(tsv[0]) == list(rows[0]) == list(sidecar) == list(EVENT_COLUMNS)
    assert all(entry["Description"] for entry in sidecar.values())
    assert tsv == rows and len(tsv) == len(rec.events)
    first = tsv[0]
    assert first["trial_type"] == "spike" and first["reviewed"] == "confirmed" and tsv[1]["reviewed"] == "n/a"
    assert first["channel"] == rec.events[0].peak_channel
    assert float(first["onset"]) == pytest.approx(rec.events[0].onset, abs=1e-4)
    assert first["channels"] == ",".join(f"{c}:{p:.3f}" for c, p in rec.events[0].channels.items())
    assert set(sidecar["reviewed"]["Levels"]) >= {row["reviewed"] for row in tsv}
    for table, columns in (("spike_rates", RATE_COLUMNS), ("spike_rates_hourly", HOURLY_COLUMNS)):
        assert list(read_table(out / f"{table}.tsv")[0]) == list(json.loads((out / f"{table}.json").read_text()))
        assert list(columns) == list(json.loads((out / f"{table}.json").read_text()))
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "spike-al"
    assert "p4-v0002" in description["GeneratedBy"][0]["Description"]
    summary = json.loads((out / "detection.json").read_text())
    assert summary["threshold"] == 0.5 and summary["events"] == len(rec.events) and summary["created"]
    assert summary["recordings"][0]["events"] == len(rec.events) and summary["recordings"][0]["reviewed"] == 1


def test_the_edfbrowser_file_lists_onset_duration_and_description(written):
    out, rec, _ = written
    lines = (out / "sub-04_task-rest_edfbrowser.txt").read_text().splitlines()
    assert lines[0] == "onset,duration,description" and len(lines) == len(rec.events) + 1
    for line, event in zip(lines[1:], rec.events):
        onset, duration, description = line.split(",")
        assert float(onset) == pytest.approx(event.onset, abs=1e-4) and float(duration) == pytest.approx(0.1)
        assert event.peak_channel in description and description.startswith("spike")


def test_the_report_figure_averages_real_snippets_of_the_most_active_channel(written):
    out, rec, _ = written
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")
    detection = Detection.load(out)
    top = detection.most_active(1)[0]["channel"]
    snippets, sfreq = spike_snippets(detection, top)
    assert sfreq == rec.sfreq and snippets.shape == (sum(e.peak_channel == top for e in rec.events), 129)
    assert np.abs(snippets[:, 64]).mean() > 3 * np.abs(snippets[:, :10]).mean()  # the spike peaks at the center


def hand_made() -> list[RecordingEvents]:
    """Two recordings: 2 h then 30 min; LA1-LA2 peaks 3 times, Fp1 once (involving LA2-LA3); B'1-B'2 only later."""

    def spike(peak: float, channel: str, *others: str) -> Event:
        return Event(peak - 0.05, 0.1, peak, channel, 0.8, {channel: 0.8, **{o: 0.6 for o in others}})

    first = RecordingEvents("night1", "night1.h5", "night1.edf", 256.0, 7200.0, ["LA1-LA2", "LA2-LA3", "Fp1"],
                            ["LA1", "LA2", "LA3", "Fp1"], "bipolar", "2024-01-01T22:00:00+00:00",
                            [spike(10, "LA1-LA2"), spike(20, "LA1-LA2", "LA2-LA3"), spike(4000, "LA1-LA2"),
                             spike(5000, "Fp1", "LA2-LA3")])  # fmt: skip
    second = RecordingEvents("night2", "night2.h5", "night2.edf", 256.0, 1800.0, ["LA1-LA2", "B'1-B'2"],
                             ["LA1", "LA2", "B'1", "B'2"], "bipolar", None, [spike(60, "B'1-B'2")])  # fmt: skip
    return [first, second]


def test_spike_rates_per_channel_and_per_hour_on_a_hand_made_case():
    rates = {row["channel"]: row for row in spike_rate_rows(hand_made())}
    assert list(rates) == ["LA1-LA2", "LA2-LA3", "Fp1", "B'1-B'2"]
    la = rates["LA1-LA2"]
    assert (la["shaft"], la["events"], la["involved"], la["minutes"]) == ("LA", "3", "3", "150.00")
    assert float(la["rate_per_minute"]) == pytest.approx(3 / 150, rel=1e-5)
    between = rates["LA2-LA3"]
    assert (between["events"], between["involved"], between["minutes"]) == ("0", "2", "120.00")
    assert float(between["involved_per_minute"]) == pytest.approx(2 / 120, rel=1e-5)
    assert (rates["Fp1"]["shaft"], rates["Fp1"]["events"]) == ("scalp", "1")
    later = rates["B'1-B'2"]
    assert (later["shaft"], float(later["rate_per_minute"])) == ("B'", pytest.approx(1 / 30, rel=1e-5))
    hourly = {(r["recording"], r["hour"], r["channel"]): r for r in hourly_rate_rows(hand_made())}
    assert len(hourly) == 2 * 3 + 1 * 2  # night1: 2 hours x 3 channels; night2: 1 (partial) hour x 2
    assert hourly[("night1", "0", "LA1-LA2")]["events"] == "2" and hourly[("night1", "1", "LA1-LA2")]["events"] == "1"
    assert hourly[("night1", "1", "Fp1")]["start"] == "2024-01-01T23:00:00+00:00"
    night2 = hourly[("night2", "0", "B'1-B'2")]
    assert (night2["start"], night2["minutes"], night2["rate_per_minute"]) == ("n/a", "30.00", f"{1 / 30:.6g}")


@pytest.mark.parametrize(
    ("channel", "shaft"),
    [("LA3-LA4", "LA"), ("B'2-B'3", "B'"), ("Am'1", "Am'"), ("EEG A1-Ref", "A"), ("Fp1", "scalp"),
     ("Fp1-F3", "scalp"), ("ECG", "ECG")],
)  # fmt: skip
def test_the_shaft_of_a_channel(channel, shaft):
    assert shaft_of(channel) == shaft


def test_an_seeg_shaft_is_not_split_at_10_20_names():
    seeg = shafts_of(["A1-A2", "A2-A3", "C2-C3", "C3-C4", "C6-C7", "B'1-B'2"])
    assert set(seeg.values()) == {"A", "C", "B'"}
    assert set(shafts_of(["Fp1-F3", "C3-C4", "ECG"]).values()) == {"scalp", "ECG"}
    assert shafts_of(["LA1-LA2", "Fp1"]) == {"LA1-LA2": "LA", "Fp1": "scalp"}


def test_a_multi_day_report_draws_without_the_window_stores(tmp_path):
    recordings = hand_made()
    out = write_detection_output(tmp_path / "out", recordings, INFO)  # stores absent: the waveform panel says so
    assert (out / "report.png").stat().st_size > 10_000


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failing_write_leaves_no_new_folder_and_the_previous_output_intact(written, monkeypatch):
    out, rec, _ = written
    before = listing(out)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(exports, "write_edfbrowser_annotations", broken)  # in the middle of the writing
    with pytest.raises(RuntimeError, match="disk full"):
        write_detection_output(out, [rec], INFO | {"threshold": 0.9})
    assert listing(out) == before
    with pytest.raises(RuntimeError, match="disk full"):
        write_detection_output(out.parent / "fresh", [rec], INFO)
    assert sorted(p.name for p in out.parent.iterdir()) == ["detections"]  # no temporary folder left either


def test_a_new_detection_replaces_a_previous_output(written):
    out, rec, _ = written
    fewer = RecordingEvents(**{**vars(rec), "events": rec.events[:2]})
    write_detection_output(out, [fewer], INFO | {"threshold": 0.8})
    summary = json.loads((out / "detection.json").read_text())
    assert summary["threshold"] == 0.8 and summary["events"] == 2
    assert len(read_table(out / "sub-04_task-rest_events.tsv")) == 2
    assert sorted(p.name for p in out.parent.iterdir()) == ["detections"]


def test_the_output_folder_must_be_new_empty_or_a_previous_detection(written, tmp_path):
    out, rec, _ = written
    check_output_dir(out)  # a previous detection output: replaced
    check_output_dir(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty")
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "thesis.tex").write_text("precious")
    with pytest.raises(OutputExistsError, match=r"papers: the folder exists and is not a previous detection output"):
        check_output_dir(tmp_path / "papers")
    with pytest.raises(OutputExistsError):
        write_detection_output(tmp_path / "papers", [rec], INFO)
    assert listing(tmp_path / "papers") == {"thesis.tex": b"precious"}
    with pytest.raises(OutputExistsError, match="is a file"):
        check_output_dir(tmp_path / "papers" / "thesis.tex")


def test_bad_recordings_are_refused_naming_them(written, tmp_path):
    _, rec, _ = written
    with pytest.raises(ValueError, match="same name"):
        write_detection_output(tmp_path / "twice", [rec, rec], INFO)
    stray = Event(1.0, 0.1, 1.05, "Zz1-Zz2", 0.9, {"Zz1-Zz2": 0.9})
    with pytest.raises(ValueError, match=r"unknown channel.*Zz1-Zz2"):
        write_detection_output(tmp_path / "stray", [RecordingEvents(**{**vars(rec), "events": [stray]})], INFO)
    assert not (tmp_path / "twice").exists() and not (tmp_path / "stray").exists()
