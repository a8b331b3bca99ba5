"""The labeling page as a clinical EEG reader sees it: Chromium (1600 x 1000) against the real Label Studio.

For the demo patient (21 bipolar channels) and a 37-channel one: every channel name is on screen without scrolling,
every channel is drawn on the same y range, the target window is shaded apart from its context, the pre-annotated
regions are drawn where they are, the hotkeys answer, and the console stays clean.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from editor_waits import wait_for_traces
from helpers import save_screenshot

import converters.cli as cli
from converters.labelconfig import (
    CONTEXT_SHADE,
    EDITOR_PLOT_PAD_PX,
    TARGET_SHADE,
    WINDOW_HOTKEYS,
    channel_key,
)
from converters.synthetic import PATIENTS, with_n_channels, write_bids
from converters.tasks import EVENTS_MODEL_VERSION

pytest.importorskip("playwright")

SECONDS = 120
PIXEL_TOLERANCE = 1.0
COLOR_TOLERANCE = 12  # per RGB component (the screenshot is anti-aliased)

# Per channel row: the plot's box, the drawn trace's y extent in plot coordinates, the legend's box.
_ROWS = """() => [...document.querySelectorAll('.htx-timeseries-channel')].map(channel => {
  const plot = channel.querySelector('rect.overlay').getBoundingClientRect();
  const ys = [...channel.querySelectorAll('g[clip-path] path')].flatMap(path =>
    ((path.getAttribute('d') || '').match(/[ML][^ML]*/g) || []).map(step => +step.slice(1).split(',')[1]));
  const legend = channel.querySelector('text[font-weight=bold]');
  const box = legend.getBoundingClientRect();
  const covering = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return {plot: {x: plot.x, y: plot.y, width: plot.width, height: plot.height}, low: Math.min(...ys),
          high: Math.max(...ys), name: legend.textContent, top: box.top, bottom: box.bottom, left: box.left,
          right: box.right, readable: covering === legend || legend.contains(covering)};
})"""


def import_project(label_studio: Any, studio_client: Any, source: Path, patient: str, store_dir: Path) -> int:
    """``python -m converters.import`` with the recording's events as pre-annotations, shown in the project."""
    title = f"View {patient} {uuid.uuid4().hex[:6]}"
    args = [str(source), "--patient", patient, "--project", title, "--url", label_studio.url,
            "--api-key", label_studio.token, "--store-dir", str(store_dir), "--events", "predictions",
            "--max-windows", "12"]  # fmt: skip
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
    rows = page.evaluate(_ROWS)
    if n_contacts == 24:  # the demo patient's page is the docs' screenshot
        shot = save_screenshot(page, "labeling-editor", tmp_path)
    else:
        shot = tmp_path / f"labeling-{n_contacts}.png"
        page.screenshot(path=shot)

    # Every channel name, legible (nothing over it) in the viewport, without scrolling.
    viewport = page.viewport_size
    assert [row["name"] for row in rows[:-1]] == names
    for row in rows:
        assert row["readable"], f"{row['name']} is covered ({shot})"
        assert row["left"] >= 0 and row["right"] <= viewport["width"], row
        assert row["top"] >= 0 and row["bottom"] <= viewport["height"], f"{row['name']} is off screen ({shot})"
    assert page.evaluate("() => document.scrollingElement.scrollTop") == 0

    # One y range: each trace's lowest and highest point sit where the common scale puts them.
    gain = max(data["ts"]["cal"])  # the calibration pulse is the gain
    for k, row in enumerate(rows[:-1]):
        values = data["ts"][channel_key(k)]
        band = row["plot"]["height"] - 2 * EDITOR_PLOT_PAD_PX
        expected = [EDITOR_PLOT_PAD_PX + (gain - v) / (2 * gain) * band for v in (max(values), min(values))]
        assert [row["low"], row["high"]] == pytest.approx(expected, abs=PIXEL_TOLERANCE), row["name"]

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
    assert page.console_errors == [], f"console errors ({tmp_path}): {page.console_errors}"
