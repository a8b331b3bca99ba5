"""Cluster review end to end: the real Label Studio, the backend under gunicorn (basic auth, webhook secret),
Chromium.

A patient's window project gets its first model from window labels; its detections (one per true spike) are
published as review tasks by ``python -m ls_backend.review``; a clinician answers the first task in the browser
(hotkey, submit); the review project's webhook reaches the backend, which stores the answer and retrains the window
project on the cluster's members with weight REVIEW_WEIGHT.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from backend_runs import settled_run
from detect_helpers import spike_events
from editor_waits import wait_for_new_task
from helpers import BACKEND_AUTH, import_patient, wait_for, wait_for_ranking

from converters.labelconfig import window_result
from converters.synthetic import PATIENTS, write_bids
from converters.windows import WindowStore
from ls_backend.detect.exports import RecordingEvents, record_detection, write_detection_output
from ls_backend.labels import project_labels
from ls_backend.project_state import ProjectState
from ls_backend.review import command as review_command
from ls_backend.review.answers import ACCEPTED, REVIEW_WEIGHT, review_labels
from ls_backend.review.members import clinician_labeled
from ls_backend.review.store import load_clustering, load_reviews, review_project
from ls_backend.review.tasks import ANSWER_HOTKEYS

pytest.importorskip("playwright")

SECONDS = 60
LABELS_PER_CLASS = 5


def first_model(studio_client, label_studio, backend) -> int:
    """The patient's window project, trained on a few window labels (given through the API)."""
    source = write_bids(backend.root / "bids", "p05", PATIENTS["C"], SECONDS)
    project_id, _ = import_patient(label_studio, backend, source, "P05", "--events", "predictions")
    tasks = list(studio_client.tasks.list(project=project_id, fields="all"))
    truth = {t.id: t.predictions[0].result[-1]["value"]["choices"][0] for t in tasks}
    chosen = [t for t in tasks if truth[t.id] == "Spike"][:LABELS_PER_CLASS]
    chosen += [t for t in tasks if truth[t.id] == "No spike"][:LABELS_PER_CLASS]
    for task in chosen:
        studio_client.annotations.create(id=task.id, result=[window_result(truth[task.id])])
    wait_for_ranking(studio_client, backend, project_id, after="cold-start")
    return project_id


def true_detection(backend, project_id: int) -> None:
    """The project's latest detection: one event per true spike of the imported recording."""
    (store_path,) = (backend.root / "stores").rglob("*.h5")
    with WindowStore(store_path) as store:
        recording = RecordingEvents.from_store(store, spike_events(store.ch_names, SECONDS))
    info = {"model_version": "truth", "threshold": 0.5}
    out = write_detection_output(backend.root / "detection", [recording], info)
    record_detection(ProjectState.of(backend.root / "models", project_id), out, info)


@pytest.mark.slow
def test_a_review_answered_in_the_browser_labels_the_clusters_members(
    label_studio, studio_client, backend, studio_page, monkeypatch
):
    project_id = first_model(studio_client, label_studio, backend)
    true_detection(backend, project_id)
    env = {"MODEL_DIR": str(backend.root / "models"), "WINDOW_STORE_DIR": str(backend.root / "stores"),
           "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}  # fmt: skip
    for name, value in (env | BACKEND_AUTH).items():  # the backend's settings (WEBHOOK_SECRET for the webhook)
        monkeypatch.setenv(name, value)
    assert review_command.main(["--project", str(project_id)]) == 0
    state = ProjectState.of(backend.root / "models", project_id)
    review_id = review_project(state)
    assert review_id is not None

    page = studio_page
    since = time.time()
    try:
        page.goto(f"{label_studio.url}/projects/{review_id}/data")
        page.get_by_role("button", name="Label All Tasks").click()
        task_id = wait_for_new_task(page)
        page.keyboard.press(ANSWER_HOTKEYS[ACCEPTED])
        page.get_by_test_id("bottombar-submit-button").click()
        wait_for(lambda: studio_client.tasks.get(task_id).annotations, "the review annotation saved", backend.log)
    finally:
        page.screenshot(path=backend.root / "last.png")
    data = studio_client.tasks.get(task_id).data

    (review,) = wait_for(lambda: load_reviews(state), "the review answer stored by the webhook", backend.log)
    assert review.answer == ACCEPTED and review.members == tuple(data["members"])
    run = settled_run(backend, project_id, since)
    # the members labeled: the cluster's, but those in a window a clinician labeled (their label wins)
    _, _, members = load_clustering(state)
    windows = project_labels(studio_client, state, backend.root / "stores")
    overruled = clinician_labeled([members[m] for m in review.members], windows, backend.root / "stores")
    expected = review_labels([review], overruled)
    assert run["n_review_labels"] == len(expected) > 0
    assert np.all(expected.weights == REVIEW_WEIGHT) and np.all(expected.targets == 1)
    assert run["n_labels"] == 2 * LABELS_PER_CLASS
