"""The clinician's path in a real browser: Chromium against the real Label Studio and the backend under gunicorn.

Log in through the form, open the patient's project, take the next task from the labeling stream ("Label All
Tasks"), check that the model's pre-annotations are drawn where the prediction puts them, draw a region, submit,
and check that once the webhook-triggered retraining has switched the project's ``model_version``, the stream serves
the task that the backend's new ranking puts first.

Screenshots go to the test's temporary folder; ``UPDATE_SCREENSHOTS=1`` also refreshes ``docs/screenshots/``
(the README's).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from backend_runs import assert_trained_on_every_label
from editor_waits import wait_for_new_task, wait_for_traces
from helpers import import_patient, logged_in_page, save_screenshot, wait_for_ranking

from converters.synthetic import PATIENTS, write_bids
from converters.tasks import event_results
from converters.windows import WindowStore

pytest.importorskip("playwright")

SEED_PER_CLASS = 6  # labels given through the API before the browser session (the clinician's earlier work)
PIXEL_TOLERANCE = 3.0
# Logged when the app cancels one of its own requests (a reload, the next task replacing the current one):
# not an editor failure.
ABORTED_REQUEST = "console: AbortError: signal is aborted without reason"
DRAW_FRACTION = 0.04  # the width of the region the test draws, as a fraction of the window


def window_truth(client: Any, project_id: int, store_dir: Path) -> dict[int, list[dict]]:
    """Each task's true result (event regions + window choice) from the events kept in its window store."""
    truth, stores = {}, {}
    for task in client.tasks.list(project=project_id, fields="all"):
        data = task.data
        store = stores.setdefault(data["store"], WindowStore(store_dir / data["store"]))
        truth[task.id] = event_results(store.annotations(), data["onset_seconds"], data["duration_seconds"],
                                       data["window_id"])  # fmt: skip
    return truth


def window_choice(result: list[dict]) -> str:
    return next(r["value"]["choices"][0] for r in result if r["type"] == "choices" and r["from_name"] == "window")


def regions(result: list[dict]) -> list[dict]:
    return [r["value"] for r in result if r["type"] == "timeserieslabels"]


def expected_next(client: Any, project_id: int, ranking: dict, window_of: dict[int, str], solved: set[int]) -> int:
    """The task Label Studio's "Uncertainty sampling" serves next (``projects/functions/next_task.py``): among
    unlabeled tasks with a prediction of the project's version, the least-solved cluster first (a solved task counts
    in the highest cluster of its predictions), then the lowest score. Scores are the backend's ranking; clusters are
    what Label Studio stored (1.23.2's prediction import drops ``cluster``, so in practice the order is the
    ranking's score order)."""
    clusters = {
        task.id: {p.model_version: getattr(p, "cluster", None) for p in task.predictions or []}
        for task in client.tasks.list(project=project_id, fields="all")
    }
    solved_in = Counter(max((c for c in clusters[t].values() if c is not None), default=None) for t in solved)
    candidates = [t for t, w in window_of.items() if t not in solved and w in ranking["windows"]]
    return min(
        candidates,
        key=lambda t: (solved_in[clusters[t][ranking["version"]]], ranking["windows"][window_of[t]][0]),
    )


def drawn_regions_x(page: Any, expected: bool = True) -> list[float]:
    """Left edges (px, relative to the plot) of the regions drawn over the time series, in order (once the first is
    drawn, when some are ``expected``)."""
    drawn = page.locator(".htx-timeseries-channel").first.locator("g.regions rect.region, g.brushes rect.selection")
    if expected:  # the page's style sheet draws them over the rows, not in their own box
        drawn.first.wait_for(state="attached")
    return sorted(float(x) for x in drawn.evaluate_all("rs => rs.map(r => r.x.baseVal.value)"))


def channel_plot(page: Any) -> dict:
    """The bounding box of the first channel's plot area."""
    return page.locator(".htx-timeseries-channel rect.overlay").first.bounding_box()


def free_span(taken: list[tuple[float, float]]) -> tuple[float, float]:
    """A span of ``DRAW_FRACTION`` in the middle of the widest gap between ``taken`` spans (fractions of the window)."""
    edges = [(0.0, 0.0), *sorted(taken), (1.0, 1.0)]
    gap_start, gap_end = max(((a[1], b[0]) for a, b in zip(edges, edges[1:])), key=lambda gap: gap[1] - gap[0])
    assert gap_end - gap_start > 2 * DRAW_FRACTION, f"no room to draw a region between {taken}"
    middle = (gap_start + gap_end) / 2
    return middle - DRAW_FRACTION / 2, middle + DRAW_FRACTION / 2


def draw_region(page: Any, label: str, start_fraction: float, end_fraction: float) -> None:
    """Pick ``label`` and drag across the first channel between the given fractions of the window."""
    page.locator(".lsf-labels").get_by_text(label, exact=True).click()
    box = channel_plot(page)
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + start_fraction * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + end_fraction * box["width"], y, steps=8)
    page.mouse.up()


@pytest.mark.slow
def test_clinician_labels_the_stream_and_the_next_task_follows_the_new_ranking(
    label_studio, studio_client, backend, browser, tmp_path
):
    source = write_bids(backend.root / "bids", "ui01", PATIENTS["A"], 120)
    project_id, title = import_patient(label_studio, backend, source, "UI01")
    assert wait_for_ranking(studio_client, backend, project_id)["version"] == "cold-start"  # no label yet
    truth = window_truth(studio_client, project_id, backend.root / "stores")
    window_of = {task.id: task.data["window_id"] for task in studio_client.tasks.list(project=project_id)}
    solved = set()
    for choice in ("Spike", "No spike"):  # the clinician's earlier work, through the API
        for task_id in [t for t in truth if window_choice(truth[t]) == choice][:SEED_PER_CLASS]:
            studio_client.annotations.create(id=task_id, result=truth[task_id])
            solved.add(task_id)
    ranking = wait_for_ranking(studio_client, backend, project_id, after="cold-start")  # the first trained model

    page = logged_in_page(browser, label_studio)  # through the login form
    try:
        page.goto(f"{label_studio.url}/projects/")
        page.get_by_text(title).first.click()
        page.wait_for_url(re.compile(rf"/projects/{project_id}/data"))
        first_row = page.get_by_text(window_of[min(window_of)], exact=True).first
        first_row.wait_for()
        save_screenshot(page, "data-manager", tmp_path)

        # 1. The stream serves the top of the ranking, with the model's regions (if any) drawn where predicted.
        page.get_by_role("button", name="Label All Tasks").click()
        first = wait_for_new_task(page)
        assert first == expected_next(studio_client, project_id, ranking, window_of, solved)
        prediction = next(
            p for p in studio_client.tasks.get(first).predictions if p.model_version == ranking["version"]
        )
        predicted = regions(prediction.result)  # none where the model answers "No spike" (test_labeling_view
        # checks the drawing of a task with regions)
        data = studio_client.tasks.get(first).data
        onset, duration = float(data["onset_seconds"]), float(data["duration_seconds"])
        times = data["ts"]["time"]  # the page: the window with context around it
        page_start, page_seconds = times[0], times[-1] - times[0] + (times[1] - times[0])

        def on_page(window_fraction: float) -> float:
            return (onset + window_fraction * duration - page_start) / page_seconds

        width = channel_plot(page)["width"]
        expected_x = sorted(on_page((r["start"] - onset) / duration) * width for r in predicted)
        wait_for_traces(page, len(data["channels"].split(", ")))  # drawn with the regions, if any
        assert drawn_regions_x(page, expected=bool(predicted)) == pytest.approx(expected_x, abs=PIXEL_TOLERANCE)
        checked = page.locator(".ant-radio-wrapper-checked").all_inner_texts()
        assert any(text.startswith(window_choice(prediction.result)) for text in checked), checked

        # 2. Correct it: keep the model's regions, mark an artifact elsewhere, submit.
        span = free_span([((r["start"] - onset) / duration, (r["end"] - onset) / duration) for r in predicted])
        draw_region(page, "Artifact", on_page(span[0]), on_page(span[1]))
        assert len(drawn_regions_x(page)) == len(predicted) + 1
        save_screenshot(page, "labeling-editor", tmp_path)
        page.get_by_test_id("bottombar-submit-button").click()
        second = wait_for_new_task(page, previous=first)
        solved.add(first)
        assert second == expected_next(studio_client, project_id, ranking, window_of, solved)  # still training
        (annotation,) = studio_client.tasks.get(first).annotations
        submitted = regions(annotation["result"])
        assert sorted(r["timeserieslabels"][0] for r in submitted) == sorted(["Artifact"] + ["Spike"] * len(predicted))
        artifact = next(r for r in submitted if r["timeserieslabels"] == ["Artifact"])
        assert artifact["start"] == pytest.approx(onset + span[0] * duration, abs=0.02)

        # 3. The submission retrained the model; once its ranking is live, the stream follows it. The task already
        # open keeps its place (Label Studio locks it for the clinician), so label it, and the one after is the
        # new ranking's first.
        ranking = wait_for_ranking(studio_client, backend, project_id, after=ranking["version"])
        last_submitted_at = time.time()
        page.get_by_test_id("bottombar-submit-button").click()
        third = wait_for_new_task(page, previous=second)
        solved.add(second)
        assert third == expected_next(studio_client, project_id, ranking, window_of, solved)
        wait_for_traces(page, len(studio_client.tasks.get(third).data["channels"].split(", ")))
        editor_errors = [e for e in page.console_errors if not e.startswith(ABORTED_REQUEST)]
        assert editor_errors == [], f"console errors ({tmp_path}): {editor_errors}"
    finally:
        page.screenshot(path=tmp_path / "last.png")  # where it stopped, for a failure
        page.context.close()
    # 4. The last annotation is always included: the run after it trained on every label submitted.
    assert_trained_on_every_label(studio_client, backend, project_id, len(solved), last_submitted_at)
