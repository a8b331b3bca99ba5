"""The clinician's loop end to end: Label Studio + the backend under gunicorn (basic auth and a webhook secret, as
deployed), webhooks, background retraining."""

from __future__ import annotations

import time

import httpx
import pytest
from backend_runs import assert_trained_on_every_label
from helpers import BACKEND_CREDENTIALS, import_patient, wait_for_ranking

from converters.labelconfig import window_result
from converters.synthetic import PATIENTS, write_bids


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["thread", "rq"], indirect=True)  # in-process worker, or RQ workers via Redis
def test_annotations_trigger_retraining_and_a_new_ranking(label_studio, studio_client, backend):
    assert httpx.get(f"{backend.url}/health").status_code == 401
    source = write_bids(backend.root / "bids", "p04", PATIENTS["C"], 60)
    project_id, _ = import_patient(label_studio, backend, source, "P04", "--events", "predictions")
    tasks = list(studio_client.tasks.list(project=project_id, fields="all"))
    truth = {t.id: t.predictions[0].result[-1]["value"]["choices"][0] for t in tasks}
    spikes = [t for t in tasks if truth[t.id] == "Spike"][:5]
    quiet = [t for t in tasks if truth[t.id] == "No spike"][:5]
    for task in spikes + quiet:  # as a clinician submits them, one webhook each
        last_submitted_at = time.time()
        studio_client.annotations.create(id=task.id, result=[window_result(truth[task.id])])

    ranking = wait_for_ranking(studio_client, backend, project_id, after="cold-start")
    assert ranking["version"].startswith(f"p{project_id}-v")
    assert "spike_backend_retrain_requests" in metrics(backend)
    # The last annotation is always included: the run after it trained on all ten labels, and its ranking is live.
    assert_trained_on_every_label(studio_client, backend, project_id, len(spikes + quiet), last_submitted_at)
    # Label Studio serves that ranking's first task (an earlier ranking may start with a window labeled since).
    ranking = backend.ranking(project_id)
    first = min(ranking["windows"], key=lambda w: ranking["windows"][w][0])
    response = httpx.get(f"{label_studio.url}/api/projects/{project_id}/next",
                         headers={"Authorization": f"Token {label_studio.token}"})  # fmt: skip
    assert response.json()["data"]["window_id"] == first
    # the cold-start ranking (unless the labels came first), then one or two trainings
    assert 1 <= finished_runs(backend, project_id) <= 4


def finished_runs(backend, project_id: int) -> int:
    """Runs of the project that ended (logged by the backend's thread or by an RQ worker)."""
    return backend.log.read_text().count(f"project {project_id}: run finished in")


def metrics(backend) -> dict[str, float]:
    """The backend's /metrics as {name: value}."""
    text = httpx.get(f"{backend.url}/metrics", auth=BACKEND_CREDENTIALS).text
    return {name: float(value) for name, value in (line.split() for line in text.splitlines() if line)}
