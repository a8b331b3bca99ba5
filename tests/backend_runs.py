"""What the backend's retraining runs left in MODEL_DIR (end-to-end tests): the last run, the serving model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import BackendServer, wait_for


def read_json(path: Path) -> dict | None:
    """A JSON file the backend writes atomically; None while it does not exist yet."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def settled_run(backend: BackendServer, project_id: int, since: float) -> dict:
    """The project's ``last_run.json`` once no retraining is queued and the last run started after ``since``
    (``time.time()`` just before the last label was submitted), so that run read every label."""
    folder = backend.root / "models" / str(project_id)

    def settled() -> dict | None:
        run = read_json(folder / "last_run.json")
        queued = (folder / "retrain.json").exists()
        return run if run and not queued and run["started_at"] > since else None

    return wait_for(settled, f"a retraining of project {project_id} after its last label", backend.log)


def assert_trained_on_every_label(
    client: Any, backend: BackendServer, project_id: int, n_labels: int, since: float
) -> None:
    """The run after the last label trained on all ``n_labels`` labels and its ranking is live; the serving model is
    that run's candidate (its metadata says ``n_labels``) unless the run kept a model that validated better."""
    run = settled_run(backend, project_id, since)
    assert run["n_labels"] == n_labels, f"the last run trained on {run['n_labels']} of {n_labels} labels"
    assert client.projects.get(project_id).model_version == run["version"]
    folder = backend.root / "models" / str(project_id)
    serving = read_json(folder / "current.json")["version"]
    (meta,) = [v for v in read_json(folder / "history.json")["versions"] if v["version"] == serving]
    if run["promoted"]:
        assert meta["labels_used"] == n_labels and run["version"].startswith(serving)
    else:  # kept: the serving model scored better on the held-back labels than the candidate trained on all of them
        assert meta["labels_used"] < n_labels
        assert run["metrics"]["candidate_auprc"] < run["metrics"]["serving_auprc"]
