"""A cluster review task in a real browser: Chromium against the real Label Studio.

The task's picture loads, every shown member is offered as an exclusion with its peak channel's name, the three
answers answer to their hotkeys, the editor logs no error, and the submitted annotation parses into the review the
backend stores. The screenshot goes to the test's temporary folder; ``UPDATE_SCREENSHOTS=1`` also refreshes
``docs/screenshots/review_task.png`` (the README's).
"""

from __future__ import annotations

import base64
import re
import uuid

import pytest
from editor_waits import wait_for_new_task
from helpers import SCREENSHOTS, save_screenshot
from review_helpers import review_patient

from converters import studio
from ls_backend.review.answers import ACCEPTED, ANSWERS
from ls_backend.review.command import cluster_patient, replace_open_tasks
from ls_backend.review.feedback import review_of_annotation
from ls_backend.review.members import read_detection
from ls_backend.review.tasks import ANSWER_HOTKEYS, review_label_config, review_tasks

pytest.importorskip("playwright")

MAX_SCREENSHOT_BYTES = 300_000
# The picture of a task (``width`` pixels wide), once the browser has decoded it.
IMAGE_LOADED = """width => [...document.querySelectorAll('img')].some(
  img => img.complete && img.naturalWidth === width)"""


def open_review_tasks(client, tmp_path) -> tuple[int, list[dict]]:
    """A review project of the synthetic patient's clusters, as ``python -m ls_backend.review`` publishes it."""
    patient = review_patient(tmp_path)
    clustering, members, gain_uv = cluster_patient(read_detection(patient.detection), patient.model, None)
    tasks = review_tasks(clustering, members, set(), "1", "review-test", gain_uv)
    title = f"P-{uuid.uuid4().hex[:6]} - cluster review"
    project, _ = studio.get_or_create_project(client, title, review_label_config())
    replace_open_tasks(client, project.id, tasks, "review-test")
    return project.id, tasks


def checked_answer(page) -> list[str]:
    return page.locator(".ant-radio-wrapper-checked").all_inner_texts()


def test_a_review_task_renders_and_answers_by_hotkey(label_studio, studio_client, studio_page, tmp_path):
    page = studio_page
    project_id, tasks = open_review_tasks(studio_client, tmp_path)
    try:
        page.goto(f"{label_studio.url}/projects/{project_id}/data")
        page.get_by_role("button", name="Label All Tasks").click()
        task_id = wait_for_new_task(page)
        data = studio_client.tasks.get(task_id).data
        assert data["cluster_id"] == tasks[0]["data"]["cluster_id"]  # the lowest score is served first
        png = base64.b64decode(data["image"].split(",", 1)[1])
        page.wait_for_function(IMAGE_LOADED, arg=int.from_bytes(png[16:20], "big"))  # the PNG's width
        for label in data["shown_members"]:  # each shown member is an exclusion choice naming its peak channel
            assert page.get_by_text(label).first.is_visible(), label  # (followed by its hotkey)
        for answer in [*ANSWERS[1:], ANSWERS[0]]:  # the last one pressed stays
            page.keyboard.press(ANSWER_HOTKEYS[answer])
            checked = checked_answer(page)
            assert len(checked) == 1 and checked[0].startswith(answer), (answer, checked)
        excluded = list(data["shown_members"])[-1]
        page.get_by_text(excluded).first.click()
        save_screenshot(page, "review_task", tmp_path)
        page.get_by_test_id("bottombar-submit-button").click()
        wait_for_new_task(page, previous=task_id)
        assert page.console_errors == [], page.console_errors
    finally:
        page.screenshot(path=tmp_path / "last.png")
    task = studio_client.tasks.get(task_id)
    (annotation,) = task.annotations
    review = review_of_annotation({"id": task_id, "data": task.data}, annotation)
    assert review.answer == ACCEPTED and review.excluded == {data["shown_members"][excluded]}
    assert review.members == tuple(data["members"])
    published = SCREENSHOTS / "review_task.png"
    if published.exists():
        assert published.stat().st_size < MAX_SCREENSHOT_BYTES
    assert re.match(r"^c[0-9a-f]{10}$", review.cluster_id)
