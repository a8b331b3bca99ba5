"""The clinician's loop end to end: Label Studio + the backend under gunicorn (basic auth and a webhook secret, as
deployed), webhooks, background retraining."""

from __future__ import annotations

import httpx
import pytest
from helpers import BACKEND_CREDENTIALS, import_patient, wait_for, wait_for_ranking

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
        studio_client.annotations.create(id=task.id, result=[window_result(truth[task.id])])

    ranking = wait_for_ranking(studio_client, backend, project_id, after="cold-start")
    assert ranking["version"].startswith(f"p{project_id}-v")
    first = min(ranking["windows"], key=lambda w: ranking["windows"][w][0])
    response = httpx.get(f"{label_studio.url}/api/projects/{project_id}/next",
                         headers={"Authorization": f"Token {label_studio.token}"})  # fmt: skip
    assert response.json()["data"]["window_id"] == first
    assert "spike_backend_retrain_requests" in metrics(backend)
    # A run is logged once it ends, a moment after its ranking went live (the budget is written last).
    done = wait_for(lambda: finished_runs(backend, project_id), "a finished training run", backend.log)
    assert done <= 4  # the cold-start ranking (unless the labels came first), then one or two trainings


def finished_runs(backend, project_id: int) -> int:
    """Runs of the project that ended (logged by the backend's thread or by an RQ worker)."""
    return backend.log.read_text().count(f"project {project_id}: run finished in")


def metrics(backend) -> dict[str, float]:
    """The backend's /metrics as {name: value}."""
    text = httpx.get(f"{backend.url}/metrics", auth=BACKEND_CREDENTIALS).text
    return {name: float(value) for name, value in (line.split() for line in text.splitlines() if line)}
