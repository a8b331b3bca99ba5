"""Log in to the real Label Studio in Chromium, open a project and its time-series task."""

from __future__ import annotations

import uuid

import pytest
from editor_waits import wait_for_traces

from converters import studio

pytest.importorskip("playwright")
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402

CONFIG = (
    '<View><TimeSeries name="ts" value="$ts" valueType="json" timeColumn="time" overviewWidth="100%">'
    '<Channel column="ch0" legend="A1-A2"/></TimeSeries>'
    '<Choices name="window" toName="ts"><Choice value="Spike"/><Choice value="No spike"/></Choices></View>'
)


def wait_for(page, locator, what: str) -> None:
    """Wait until ``locator`` shows; on timeout fail with the console errors (the usual cause)."""
    try:
        locator.first.wait_for()
    except PlaywrightTimeout:
        pytest.fail(f"{what} did not show at {page.url}; console errors: {page.console_errors}")


@pytest.mark.slow
def test_project_and_task_open_without_console_errors(studio_client, studio_page, label_studio, tmp_path):
    title = f"Browser smoke {uuid.uuid4().hex[:6]}"
    project, _ = studio.get_or_create_project(studio_client, title, CONFIG)
    n_times = 200
    data = {
        "ts": {"time": [i / 100 for i in range(n_times)], "ch0": [(i % 20) / 20 for i in range(n_times)]},
        "window_id": "b1",
    }
    (task_id,) = studio.import_tasks(studio_client, project.id, [{"data": data}], progress=False)
    page = studio_page

    page.goto(f"{label_studio.url}/projects/{project.id}/data")
    wait_for(page, page.get_by_text(title), "the project title")
    wait_for(page, page.get_by_text("b1", exact=True), "the task's row in the Data Manager")
    page.screenshot(path=tmp_path / "project.png")
    assert page.console_errors == [], f"console errors on the project page ({tmp_path}): {page.console_errors}"

    page.goto(f"{label_studio.url}/projects/{project.id}/data?task={task_id}")
    wait_for_traces(page, 1)  # the editor reports its errors while it draws
    wait_for(page, page.get_by_text("A1-A2"), "the channel legend")
    page.screenshot(path=tmp_path / "task.png")
    assert page.console_errors == [], f"console errors on the task page ({tmp_path}): {page.console_errors}"
