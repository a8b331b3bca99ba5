"""The labeling page as a clinical EEG reader sees it: Chromium (1600 x 1000) against the real Label Studio.

For the demo patient (21 bipolar channels) and a 37-channel one: every channel name is on screen without scrolling,
every channel is drawn on the same y range, the target window is shaded apart from its context, the pre-annotated
regions are drawn where they are, the hotkeys answer, and the console stays clean. For a real clinical scalp EDF+
(skipped without the real recordings): the double banana made from its referential names, and every channel name
on screen, in the double banana and in the referential montage.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from editor_waits import (
    assert_names_on_screen,
    channel_checkboxes,
    channel_rows,
    snap_points,
    trace_box,
    wait_for_scroll_stop,
    wait_for_traces,
)
from helpers import save_screenshot

import converters.cli as cli
from benchmarks.bench_labeling_page import EIGHT_SHAFTS, eight_shafts_of_eight
from converters.labelconfig import (
    CALIBRATION_KEY,
    CONTEXT_SHADE,
    EDITOR_MARGIN_TOP_PX,
    EDITOR_PLOT_PAD_PX,
    FULLWIDTH_DOLLAR,
    REGION_HOTKEYS,
    TARGET_SHADE,
    WINDOW_HOTKEYS,
    channel_key,
    config_channels,
    row_layout,
)
from converters.synthetic import PATIENTS, with_n_channels, write_bids
from converters.tasks import EVENTS_MODEL_VERSION

pytest.importorskip("playwright")

SECONDS = 120
CLINICAL_EDF = Path("mne-testing-data", "EDF", "chtypes_edf.edf")  # Nihon Kohden export: 42 channels, 200 Hz, 5 s
CLINICAL_BANANA = ["Fp1-F7", "F7-T7", "T7-P7", "P7-O1", "Fp2-F8", "F8-T8", "T8-P8", "P8-O2", "Fp1-F3", "F3-C3",
                   "C3-P3", "P3-O1", "Fp2-F4", "F4-C4", "C4-P4", "P4-O2", "Fz-Cz", "Cz-Pz"]  # fmt: skip
WHEEL_PX = 120  # one notch of a mouse wheel
PIXEL_TOLERANCE = 1.0
COLOR_TOLERANCE = 12  # per RGB component (the screenshot is anti-aliased)


def import_project(
    label_studio: Any, studio_client: Any, source: Path, patient: str, store_dir: Path, *options: str
) -> int:
    """``python -m converters.import`` (with ``options``) with the recording's events as pre-annotations, shown in
    the project."""
    title = f"View {patient} {uuid.uuid4().hex[:6]}"
    args = [str(source), "--patient", patient, "--project", title, "--url", label_studio.url,
            "--api-key", label_studio.token, "--store-dir", str(store_dir), "--events", "predictions",
            "--max-windows", "12", *options]  # fmt: skip
    assert cli.main(args) == 0
    project_id = next(p.id for p in studio_client.projects.list(title=title) if p.title == title)
    studio_client.projects.update(id=project_id, model_version=EVENTS_MODEL_VERSION)
    return project_id


def task_with_a_region(client: Any, project_id: int) -> Any:
    """A task whose pre-annotation has a spike region."""
    for task in client.tasks.list(project=project_id, fields="all"):
        if any(r["type"] == "timeserieslabels" for p in task.predictions or [] for r in p.result):
            return task
    pytest.fail(f"no task of project {project_id} has a pre-annotated region")


def pixel(image: Any, x: float, y: float) -> tuple[int, int, int]:
    return image.getpixel((round(x), round(y)))[:3]


def assert_color(found: tuple[int, int, int], expected: str, where: str) -> None:
    wanted = tuple(int(expected[i : i + 2], 16) for i in (1, 3, 5))
    assert all(abs(a - b) <= COLOR_TOLERANCE for a, b in zip(found, wanted, strict=True)), (where, found, expected)


def assert_one_y_range(data: dict, rows: list[dict]) -> None:
    """Each trace's lowest and highest point sit where the common scale (the calibration pulse) puts them."""
    gain = max(data["ts"][CALIBRATION_KEY])
    for k, row in enumerate(rows[:-1]):
        values = data["ts"][channel_key(k)]
        band = row["plot"]["height"] - 2 * EDITOR_PLOT_PAD_PX
        expected = [EDITOR_PLOT_PAD_PX + (gain - v) / (2 * gain) * band for v in (max(values), min(values))]
        assert [row["low"], row["high"]] == pytest.approx(expected, abs=PIXEL_TOLERANCE), row["name"]


@pytest.mark.slow
@pytest.mark.parametrize("n_contacts", [24, 40], ids=["demo-21-channels", "37-channels"])
def test_the_page_shows_every_channel_at_one_scale_around_the_marked_target(
    n_contacts, label_studio, studio_client, studio_page, tmp_path
):
    from PIL import Image

    profile = with_n_channels(PATIENTS["A"], n_contacts)
    source = write_bids(tmp_path / "bids", f"v{n_contacts}", profile, SECONDS)
    project_id = import_project(label_studio, studio_client, source, f"V{n_contacts}", tmp_path / "stores")
    task = task_with_a_region(studio_client, project_id)
    data = task.data
    names = data["channels"].split(", ")
    assert len(names) == n_contacts - len(profile.shafts)  # the shafts' bipolar derivations
    page = studio_page
    page.goto(f"{label_studio.url}/projects/{project_id}/data?task={task.id}")
    wait_for_traces(page, len(names) + 1)  # and the calibration row
    page.locator("g.regions rect.region, .htx-timeseries-channel g.brushes rect").first.wait_for()
    rows = channel_rows(page)
    if n_contacts == 24:  # the demo patient's page is the docs' screenshot
        shot = save_screenshot(page, "labeling-editor", tmp_path)
    else:
        shot = tmp_path / f"labeling-{n_contacts}.png"
        page.screenshot(path=shot)

    # Every channel name, legible (nothing over it) in the viewport, without scrolling.
    assert [row["name"] for row in rows[:-1]] == names
    assert_names_on_screen(page, rows, shot)

    assert_one_y_range(data, rows)

    # The target window is shaded apart from its context (sampled above the first trace).
    plot = rows[0]["plot"]
    times = data["ts"]["time"]
    page_seconds = times[-1] - times[0] + (times[1] - times[0])

    def x_of(seconds: float) -> float:
        return plot["x"] + (seconds - times[0]) / page_seconds * plot["width"]

    onset, duration = data["onset_seconds"], data["duration_seconds"]
    y = plot["y"] + 2
    with Image.open(shot) as image:
        assert_color(pixel(image, x_of(onset + duration / 2), y), TARGET_SHADE, "the target")
        assert_color(pixel(image, x_of(onset - 1.0), y), CONTEXT_SHADE, "the context before")
        assert_color(pixel(image, x_of(onset + duration + 1.0), y), CONTEXT_SHADE, "the context after")

    # The pre-annotated regions are drawn where they are.
    predicted = [r["value"] for p in task.predictions for r in p.result if r["type"] == "timeserieslabels"]
    drawn = page.locator(".htx-timeseries-channel").first.locator("g.regions rect.region, g.brushes rect.selection")
    lefts = sorted(x for x in drawn.evaluate_all("rs => rs.map(r => r.getBoundingClientRect().left)"))
    assert lefts[: len(predicted)] == pytest.approx(
        sorted(x_of(r["start"]) for r in predicted), abs=3 * PIXEL_TOLERANCE
    )

    # The hotkeys answer: the window's answer (the pre-annotation chose "Spike": a key of the chosen one unsets it,
    # so the others first), and the region label to draw with.
    for choice in ("No spike", "Unsure", "Spike"):
        key = WINDOW_HOTKEYS[choice]
        page.keyboard.press(key)
        checked = page.locator(".ant-radio-wrapper-checked, .ant-checkbox-wrapper-checked").all_inner_texts()
        assert any(text.strip().startswith(choice) for text in checked), (key, checked)
    page.keyboard.press("3")
    selected = page.locator(".lsf-labels [class*=selected]").all_inner_texts()
    assert any("Artifact" in text for text in selected), selected
    page.keyboard.press("3")  # unpicked again: a click now selects a region instead of drawing one

    # A selected region shows its channel checkboxes, each right of its channel's row; nothing moves or scrolls.
    region = drawn.first.bounding_box()
    page.mouse.click(region["x"] + region["width"] / 2, plot["y"] + plot["height"] / 2)
    page.locator(".page-traces .lsf-choice__checkbox").nth(len(names) - 1).wait_for()
    selected_shot = tmp_path / f"selected-{n_contacts}.png"
    page.screenshot(path=selected_shot)
    assert channel_rows(page) == rows
    assert_names_on_screen(page, rows, selected_shot)
    boxes = channel_checkboxes(page)
    assert [box["name"] for box in boxes] == names
    for row, box in zip(rows, boxes):
        top = row["plot"]["y"] + EDITOR_PLOT_PAD_PX
        assert top <= box["y"] + box["height"] / 2 <= top + row["plot"]["height"] - 2 * EDITOR_PLOT_PAD_PX, (row, box)
        assert box["x"] >= row["plot"]["x"] + row["plot"]["width"], (box, selected_shot)
    assert page.console_errors == [], f"console errors ({tmp_path}): {page.console_errors}"


def press_and_check(page: Any, choice: str) -> None:
    """Press the window answer's hotkey; the answer is then checked."""
    page.keyboard.press(WINDOW_HOTKEYS[choice])
    checked = page.locator(".ant-radio-wrapper-checked, .ant-checkbox-wrapper-checked").all_inner_texts()
    assert any(text.strip().startswith(choice) for text in checked), (choice, checked)


@pytest.mark.slow
def test_beyond_40_channels_the_traces_scroll_by_whole_shafts(label_studio, studio_client, studio_page, tmp_path):
    source = write_bids(tmp_path / "bids", "v56", eight_shafts_of_eight(), SECONDS)
    project_id = import_project(label_studio, studio_client, source, "V56", tmp_path / "stores")
    task = task_with_a_region(studio_client, project_id)
    names = task.data["channels"].split(", ")
    layout = row_layout(names)
    assert len(names) == 56 and layout.scrolls and layout.titles == tuple(EIGHT_SHAFTS)
    page = studio_page
    page.goto(f"{label_studio.url}/projects/{project_id}/data?task={task.id}")
    wait_for_traces(page, len(names) + 1)  # and the calibration row
    page.locator("g.regions rect.region, .htx-timeseries-channel g.brushes rect").first.wait_for()
    shot = tmp_path / "labeling-56.png"
    page.screenshot(path=shot)
    rows = channel_rows(page)
    assert [row["name"] for row in rows[:-1]] == names
    assert_one_y_range(task.data, rows)

    # The snap points are the first rows of the shafts, each titled with its shaft above its rows.
    firsts = [0, *layout.starts]
    snaps = snap_points(page)
    assert [k for k, snap in enumerate(snaps) if snap["align"].startswith("start")] == firsts
    assert [snaps[k]["title"] for k in firsts] == [json.dumps(title) for title in EIGHT_SHAFTS]

    # A selected region's channel checkboxes have hotkeys of their own, none of the window's or the labels'.
    drawn = page.locator(".htx-timeseries-channel").first.locator("g.regions rect.region, g.brushes rect.selection")
    region, plot = drawn.first.bounding_box(), rows[0]["plot"]
    page.mouse.click(region["x"] + region["width"] / 2, plot["y"] + plot["height"] / 2)
    page.locator(".page-traces .lsf-choice__checkbox").nth(len(names) - 1).wait_for()
    boxes = channel_checkboxes(page)
    assert [box["name"] for box in boxes] == names
    taken = {*WINDOW_HOTKEYS.values(), *REGION_HOTKEYS.values()}
    assert not taken & {box["hotkey"] for box in boxes}, [box["hotkey"] for box in boxes]
    ticked = [box["checked"] for box in boxes]
    for choice in ("No spike", "Spike"):  # the window's keys answer with a region selected, no checkbox changes
        press_and_check(page, choice)
        assert [box["checked"] for box in channel_checkboxes(page)] == ticked

    # Scrolled to (its first row into view), every shaft is whole in the traces' box, above the calibration row
    # that stays at its bottom, its names legible and each checkbox beside its row; the page itself never scrolls.
    stops = []
    for group, first in enumerate(firsts):
        page.evaluate("k => document.querySelectorAll('.htx-timeseries-channel')[k].scrollIntoView()", first)
        box, rows, boxes = trace_box(page), channel_rows(page), channel_checkboxes(page)
        assert box["page_scroll_top"] == 0 and box["editor_scroll_top"] == 0
        calibration = rows[-1]["plot"]["y"] + EDITOR_PLOT_PAD_PX
        assert calibration == pytest.approx(box["bottom"] - layout.calibration_px, abs=PIXEL_TOLERANCE)
        if box["scroll_top"] < box["max_scroll"]:  # at the box's top: the shaft's title, then its rows
            above = EDITOR_MARGIN_TOP_PX + EDITOR_PLOT_PAD_PX if group == 0 else layout.gap_px(group)
            assert rows[first]["plot"]["y"] + EDITOR_PLOT_PAD_PX == pytest.approx(box["top"] + above)
        for k in (k for k, g in enumerate(layout.groups) if g == group):
            top = rows[k]["plot"]["y"] + EDITOR_PLOT_PAD_PX
            assert box["top"] <= top and top + layout.row_px <= calibration, (names[k], box, shot)
            assert rows[k]["readable"] and box["top"] <= rows[k]["top"] and rows[k]["bottom"] <= calibration, names[k]
            assert top <= boxes[k]["y"] + boxes[k]["height"] / 2 <= top + layout.row_px, (boxes[k], rows[k])
        stops.append(round(box["scroll_top"]))
        if group == 1:  # shaft B' (its spikes) at the top: the docs' screenshot
            save_screenshot(page, "labeling_56ch", tmp_path)

    # The wheel scrolls from shaft to shaft, down to the end, and stops nowhere else.
    assert stops == sorted(stops) and stops[-1] == round(trace_box(page)["max_scroll"])
    page.evaluate("() => document.querySelector('.page-traces').scrollTo(0, 0)")
    plot = channel_rows(page)[0]["plot"]
    page.mouse.move(plot["x"] + plot["width"] / 2, plot["y"] + plot["height"] / 2)
    at = 0
    for expected in sorted(set(stops) - {0}):
        page.mouse.wheel(0, WHEEL_PX)
        at = wait_for_scroll_stop(page, at, stops)
        assert at == expected
    assert trace_box(page)["page_scroll_top"] == 0
    press_and_check(page, "Unsure")  # the keys still answer, scrolled
    assert page.console_errors == [], f"console errors ({tmp_path}): {page.console_errors}"


@pytest.fixture(scope="session")
def clinical_edf(real_data_dir: Path | None) -> Path:
    """The real clinical scalp EDF+: a Nihon Kohden export, 42 channels named like ``EEG Fp1-Ref`` (EEG, ECG, SaO2,
    DC), an event "high amp RDA F4, C4"."""
    if real_data_dir is None or not (real_data_dir / CLINICAL_EDF).is_file():
        pytest.skip(f"the real recordings folder (SPIKE_AL_REAL_DATA) is absent, or lacks {CLINICAL_EDF}")
    return real_data_dir / CLINICAL_EDF


def test_a_real_clinical_export_is_shown_in_the_double_banana(clinical_edf, tmp_path):
    out = tmp_path / "tasks.json"
    args = [str(clinical_edf), "--patient", "NK", "--dry-run", "--out", str(out), "--store-dir", str(tmp_path / "s")]
    assert cli.main(args) == 0
    tasks = json.loads(out.read_text())
    assert [task["data"]["channels"].split(", ") for task in tasks] == [CLINICAL_BANANA] * 2  # two 2-s windows
    assert config_channels(cli.label_config_path(out).read_text()) == CLINICAL_BANANA


@pytest.mark.slow
@pytest.mark.parametrize("montage, n_channels", [("auto", 18), ("referential", 38)], ids=["banana", "referential"])
def test_a_real_clinical_export_shows_every_channel_name(
    clinical_edf, montage, n_channels, label_studio, studio_client, studio_page, tmp_path
):
    stores = tmp_path / "stores"
    project_id = import_project(label_studio, studio_client, clinical_edf, "NK", stores, "--montage", montage)
    task = next(iter(studio_client.tasks.list(project=project_id, fields="all")))
    names = task.data["channels"].split(", ")
    assert len(names) == n_channels and (montage == "auto") == (names == CLINICAL_BANANA)
    page = studio_page
    page.goto(f"{label_studio.url}/projects/{project_id}/data?task={task.id}")
    wait_for_traces(page, len(names) + 1)  # and the calibration row
    rows = channel_rows(page)
    shot = tmp_path / f"clinical-{montage}.png"
    page.screenshot(path=shot)
    assert [row["name"] for row in rows[:-1]] == names
    assert_names_on_screen(page, rows, shot)
    # the channel checkboxes name every channel, "POL $A1" too (Label Studio reads "$A1" as a task field)
    shown = [box["name"].replace(FULLWIDTH_DOLLAR, "$") for box in channel_checkboxes(page)]
    assert shown == names, f"channel checkboxes {shown}"
    assert page.console_errors == [], f"console errors ({tmp_path}): {page.console_errors}"
