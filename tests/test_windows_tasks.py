"""Window store, stable ids, candidate pools, and the tasks built from a store."""

import json
import re

import numpy as np
import pytest

from converters.labelconfig import (
    CALIBRATION_KEY,
    MIN_ROW_PX,
    SCROLL_BOX_PX,
    WINDOW_CHOICES,
    PageLayout,
    channel_groups,
    config_channels,
    make_label_config,
    nice_gain_uv,
    page_groups,
    row_height_px,
    row_layout,
    shaft_of,
)
from converters.readers.base import Annotation
from converters.tasks import event_label, make_tasks, minmax_decimate, page_layout, patient_gain_uv
from converters.windows import (
    StoreWriter,
    WindowParams,
    WindowStore,
    fingerprint,
    select_candidates,
    window_ids,
    window_starts,
)

SFREQ = 256.0


def write_store(path, n_chans=3, seconds=20, window_seconds=2.0, annotations=()):
    rng = np.random.default_rng(0)
    n_times = int(seconds * SFREQ)
    signal = rng.standard_normal((n_chans, n_times)).astype(np.float32) * 40
    writer = StoreWriter(path, n_chans, n_times, chunk_times=300)
    for start in range(0, n_times, 700):
        writer.append(signal[:, start : start + 700])
    window, stride = WindowParams(window_seconds).samples(SFREQ)
    starts = window_starts(n_times, window, stride)
    writer.write_index(window_ids("ab" * 32, starts, SFREQ, window), starts)
    writer.write_annotations(list(annotations))
    writer.set_attrs(
        sfreq=SFREQ,
        ch_names=[f"A{i + 1}-A{i + 2}" for i in range(n_chans)],
        channel_scale_uv=np.full(n_chans, 40.0, np.float32),
        window_samples=window,
        stride_samples=stride,
        provenance={"meas_date": "2024-03-01T22:00:00+00:00"},
    )
    writer.commit()
    return signal


def test_store_round_trip_by_window_id(tmp_path):
    signal = write_store(tmp_path / "rec.h5")
    assert not (tmp_path / "rec.h5.tmp").exists()
    with WindowStore(tmp_path / "rec.h5") as store:
        assert len(store) == 10 and store.ch_names[1] == "A2-A3"
        ids = [store.ids[3], store.ids[0]]
        x = store.read_windows(ids, scaled=False)
        np.testing.assert_array_equal(x[0], signal[:, 3 * 512 : 4 * 512])
        np.testing.assert_allclose(store.read_windows(ids)[1], signal[:, :512] / 40.0, rtol=1e-6)
        assert sum(len(batch) for batch, _ in store.iter_batches(batch_size=4)) == 10
        with pytest.raises(KeyError, match="unknown window id"):
            store.read_windows(["nope"])


def test_an_aborted_store_leaves_nothing(tmp_path):
    writer = StoreWriter(tmp_path / "rec.h5", 2, 1000)
    writer.append(np.zeros((2, 500), np.float32))
    with pytest.raises(ValueError, match="wrote 500 of 1000"):
        writer.commit()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_window_ids_are_stable_and_readable():
    ids = window_ids("0123456789abcdef", np.array([0, 512, 921600]), 256.0, 512)
    assert ids == ["0123456789ab-000000000-2000", "0123456789ab-000002000-2000", "0123456789ab-003600000-2000"]


def test_fingerprint_depends_on_name_and_content_not_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a, moved, b, c = tmp_path / "x/a.bin", tmp_path / "y/a.bin", tmp_path / "x/b.bin", tmp_path / "x/c.bin"
    for path in (a, moved, b):
        path.write_bytes(b"x" * 5000)
    c.write_bytes(b"x" * 4999 + b"y")
    assert fingerprint(a) == fingerprint(moved)  # the same recording, moved to another folder
    assert fingerprint(a) != fingerprint(c)
    assert fingerprint(a) != fingerprint(b)  # the name is part of it: two copies are two recordings


def test_fingerprint_of_a_large_file_samples_blocks_across_it(tmp_path):
    path = tmp_path / "big.bin"  # 4 blocks of 16 bytes, at offsets 0, 328, 656 and 984

    def changed(offset: int) -> bool:
        content = bytearray(1000)
        path.write_bytes(content)
        before = fingerprint(path, n_blocks=4, block_bytes=16)
        content[offset] = 1
        path.write_bytes(content)
        return fingerprint(path, n_blocks=4, block_bytes=16) != before

    assert changed(0) and changed(335) and changed(999)  # the first, a middle and the last block
    assert not changed(100)  # between blocks: what makes it cheap on a 100 GB file
    path.write_bytes(bytes(1000))
    before = fingerprint(path, n_blocks=4, block_bytes=16)
    path.write_bytes(bytes(1001))  # one more zero: every sampled block is still zeros, the size is not
    assert fingerprint(path, n_blocks=4, block_bytes=16) != before


def test_candidate_pool_covers_the_recording():
    rows = select_candidates(10_000, 100, seed=3)
    assert len(rows) == 100 and len(set(rows)) == 100
    assert rows.min() < 100 and rows.max() >= 9900
    assert np.all(np.diff(rows) > 0)
    assert select_candidates(50, None).tolist() == list(range(50))
    np.testing.assert_array_equal(rows, select_candidates(10_000, 100, seed=3))


def test_minmax_decimation_keeps_peaks():
    x = np.zeros((2, 1000), np.float32)
    x[0, 333] = 500.0
    x[1, 777] = -300.0
    y = minmax_decimate(x, 5)
    assert y.shape == (2, 200) and y[0].max() == 500.0 and y[1].min() == -300.0


def test_tasks_carry_display_data_metadata_and_events(tmp_path):
    events = [Annotation(4.5, 0.07, "spike"), Annotation(9.0, 0.0, "XLSpike"), Annotation(1.0, 0.2, "pop artifact")]
    write_store(tmp_path / "rec.h5", annotations=events)
    with WindowStore(tmp_path / "rec.h5") as store:
        tasks = list(
            make_tasks(store, patient="P01", recording="rec.edf", store_key="P01/rec.h5", events="annotations")
        )
    assert len(tasks) == 10
    data = tasks[2]["data"]
    assert data["window_id"].endswith("-000004000-2000") and data["onset_seconds"] == 4.0
    assert data["onset_time"] == "2024-03-01T22:00:04+00:00"
    assert data["store"] == "P01/rec.h5" and data["channels"] == "A1-A2, A2-A3, A3-A4"
    series = data["ts"]
    assert set(series) == {"time", "ch0", "ch1", "ch2", CALIBRATION_KEY}
    assert series["time"][0] == 0.0 and np.all(np.diff(series["time"]) > 0)  # the page: 4 s of context each side
    assert series["time"][-1] == pytest.approx(10.0, abs=0.01)
    results = tasks[2]["annotations"][0]["result"]
    regions = [r for r in results if r["type"] == "timeserieslabels"]
    assert [(r["value"]["start"], r["value"]["end"], r["value"]["timeserieslabels"]) for r in regions] == [
        (4.5, 4.57, ["Spike"])
    ]
    assert results[-1]["value"]["choices"] == ["Spike"]
    assert tasks[0]["annotations"][0]["result"][-1]["value"]["choices"] == ["No spike"]  # only an artifact there
    assert tasks[4]["annotations"][0]["result"][0]["value"]["start"] == 8.95  # a marker becomes 100 ms
    assert len(json.dumps(tasks[0])) < 200_000


def test_a_page_shows_context_at_one_scale_clipped_and_padded_at_the_edges(tmp_path):
    signal = write_store(tmp_path / "rec.h5", seconds=20)
    layout = PageLayout(gain_uv=50.0, window_seconds=2.0, context_seconds=4.0)
    with WindowStore(tmp_path / "rec.h5") as store:
        first, middle = list(make_tasks(store, patient="P", recording="r", store_key="k", rows=[0, 5], layout=layout))
    series = middle["data"]["ts"]
    assert series["time"][0] == 6.0 and len(series["time"]) == 10 * SFREQ  # the window 10-12 s, 6-16 s shown
    np.testing.assert_allclose(series["ch1"], np.clip(signal[1, 6 * 256 : 16 * 256], -50, 50), atol=0.051)
    assert max(series["ch1"]) == 50.0 and min(series["ch1"]) == -50.0  # clipped flat, never rescaled
    assert max(series[CALIBRATION_KEY]) == 50.0 and min(series[CALIBRATION_KEY]) == 0.0  # a pulse of the gain
    before = first["data"]["ts"]
    assert before["time"][0] == -4.0 and set(before["ch0"][: 4 * 256]) == {0.0}  # before the recording: flat
    assert first["data"]["onset_seconds"] == 0.0 and first["data"]["duration_seconds"] == 2.0


def test_the_gain_is_a_usual_one_above_the_patients_robust_amplitude(tmp_path):
    write_store(tmp_path / "rec.h5")  # robust standard deviation 40 uV on every channel
    with WindowStore(tmp_path / "rec.h5") as store:
        assert patient_gain_uv([store]) == 200.0  # 5 x 40 uV
        assert page_layout([store], gain_uv=120.0) == PageLayout(120.0, 2.0)
    assert [nice_gain_uv(a) for a in (9.0, 66.6, 76.0, 101.0, 1234.0)] == [10.0, 75.0, 100.0, 150.0, 1500.0]
    with pytest.raises(ValueError, match="gain_uv must be positive"):
        PageLayout(0.0, 2.0)


def test_display_is_decimated_for_long_windows(tmp_path):
    write_store(tmp_path / "rec.h5", n_chans=24, seconds=40, window_seconds=20.0)
    with WindowStore(tmp_path / "rec.h5") as store:
        task = next(make_tasks(store, patient="P", recording="r", store_key="k", max_display_points=50_000))
    n_points = sum(len(v) for k, v in task["data"]["ts"].items() if k not in ("time", CALIBRATION_KEY))
    assert 25_000 <= n_points <= 50_000


def test_event_labels():
    assert event_label("spike_wave") == "Spike" and event_label("Sharp wave") == "Sharp wave"
    assert event_label("artifact_pop") == "Artifact" and event_label("seizure") is None


def test_label_config_lists_real_channel_names():
    config = make_label_config(["A1-A2", "B'1-B'2", "TP'3-TP'4"], PageLayout(75.0, 2.0))
    assert config_channels(config) == ["A1-A2", "B'1-B'2", "TP'3-TP'4"]  # the calibration row is not a channel
    assert 'column="ch2"' in config and 'overviewWidth="100%"' in config
    assert config.count('dataRange="-75,75"') == 4  # three channels and the calibration row: one y range
    assert 'legend="75 uV"' in config and "calc(98px + 0.400000 * (100% - 118px))" in config  # target at 4-6 s
    for choice in WINDOW_CHOICES:
        assert f'<Choice value="{choice}" hotkey=' in config
    with pytest.raises(ValueError):
        make_label_config([])


def test_channels_are_grouped_by_chain_or_shaft_and_rows_fit_the_editor():
    assert channel_groups(["A1-A2", "A2-A3", "B'1-B'2", "B'2-B'3"]) == [0, 0, 1, 1]
    assert channel_groups(["Fp1-F7", "F7-T3", "Fp2-F8", "Fz-Cz", "Cz-Pz"]) == [0, 0, 1, 2, 2]
    assert channel_groups(["A1", "A2", "B1"]) == [0, 0, 1]
    referential = ["EEG Fp1-Ref", "EEG Fp2-Ref", "EEG F3-Ref", "EEG Cz-Ref", "POL PG1", "POL PG2", "POL E"]
    assert channel_groups(referential) == [0, 0, 0, 0, 1, 1, 2]  # the scalp electrodes together, then shafts
    unchained = [f"A{k}-B{k}" for k in range(37)]  # 37 groups of one: their gaps would not fit, so none is drawn
    assert channel_groups(unchained) == list(range(37)) and page_groups(unchained) == [0] * 37
    more = [f"A{k}-B{k}" for k in range(42)]  # beyond 41 channels the page scrolls anyway: groups stay apart
    assert page_groups(more) == channel_groups(more)
    assert row_height_px(21, 3) * 22 <= 640 and row_height_px(37, 3) == 16
    assert row_height_px(100, 5) == MIN_ROW_PX  # beyond 41 channels the page scrolls, rows stay readable


def bipolar_names(shafts: dict[str, int]) -> list[str]:
    """The bipolar derivations of shafts of these many contacts: ``A1-A2, A2-A3, ...``."""
    return [f"{shaft}{k}-{shaft}{k + 1}" for shaft, n in shafts.items() for k in range(1, n)]


@pytest.mark.parametrize(
    "shafts",
    [{"A": 15, "B'": 12, "Hp'": 18}, dict.fromkeys("ABCDEFGH", 8), {**dict.fromkeys("ABCDEFG", 18), "J": 2}],
    ids=["42-channels", "56-channels", "120-channels"],
)
def test_beyond_41_channels_the_traces_scroll_by_whole_shafts(shafts):
    names = bipolar_names(shafts)
    rows = row_layout(names)
    assert rows.scrolls and rows.row_px >= MIN_ROW_PX
    assert rows.titles == tuple(shafts)  # one group per shaft, titled with its name
    heights = rows.group_heights_px()
    assert all(height + rows.calibration_px <= SCROLL_BOX_PX for height in heights)  # a whole shaft in the box
    # the box scrolls exactly as far as a group start: the last position does not cut a shaft either
    content = sum(heights) + rows.calibration_gap_px() + rows.calibration_px
    assert content - SCROLL_BOX_PX in np.cumsum([0, *heights])
    # the snap points of the style sheet: the first row of each group, the first group's too
    config = make_label_config(names)
    snapping = re.findall(r"-channel:nth-child\((\d+)\) \{ scroll-snap-align: start", config)
    assert [int(n) - 1 for n in snapping] == [0, *rows.starts]
    assert "scroll-snap-type: y mandatory" in config


@pytest.mark.parametrize("n_chans", [37, 40, 41, 42])
def test_up_to_41_channels_the_page_does_not_scroll(n_chans):
    names = bipolar_names({"A": 14, "B'": 14, "C": n_chans - 25})  # 41 and the calibration row: 42 rows of 15 px
    rows = row_layout(names)
    assert rows.scrolls == (n_chans >= 42) and ("scroll-snap" in make_label_config(names)) == rows.scrolls
    if not rows.scrolls:
        assert set(rows.titles) == {""} and rows.calibration_gap_px() == 6


def test_a_group_is_titled_with_its_shaft():
    assert shaft_of(["Hp'1-Hp'2", "Hp'2-Hp'3"]) == "Hp'" and shaft_of(["EEG A1-Ref", "EEG A2-Ref"]) == "A"
    assert shaft_of(["Fp1-F7", "F7-T3"]) == "" and shaft_of(["A1-B1"]) == "" and shaft_of(["ECG"]) == ""
