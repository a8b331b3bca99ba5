"""Retraining against the real Label Studio: labels in, a new model version and ranking out, /next follows it."""

from __future__ import annotations

import json
import uuid

import httpx
import numpy as np
import pytest

import converters.cli as cli
from converters import studio
from converters.labelconfig import window_result
from converters.synthetic import PATIENTS, write_bids
from ls_backend.config import Settings
from ls_backend.engine import SpikeEngine
from ls_backend.project_state import COLD_START_VERSION, ProjectState
from ls_backend.retrain import retrain_project
from ls_backend.stores import WindowRef
from ls_backend.task_index import cached_task_index


@pytest.fixture
def imported(label_studio, studio_client, tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain")
    source = write_bids(root / "bids", "p03", PATIENTS["C"], 80)  # spike-wave, 12/min
    title = f"Spikes retrain {uuid.uuid4().hex[:6]}"
    args = [str(source), "--patient", "P03", "--project", title, "--url", label_studio.url, "--api-key",
            label_studio.token, "--store-dir", str(root / "stores"), "--events", "predictions"]
    assert cli.main(args) == 0
    project = next(p for p in studio_client.projects.list(title=title) if p.title == title)
    return root, project


def truth_of(task) -> str:
    return task.predictions[0].result[-1]["value"]["choices"][0]  # the synthetic events, imported as predictions


@pytest.mark.slow
def test_labels_train_a_model_and_the_ranking_reaches_the_labeling_stream(
    label_studio, studio_client, imported, tmp_path
):
    root, project = imported
    tasks = list(studio_client.tasks.list(project=project.id, fields="all"))
    spikes = [t for t in tasks if truth_of(t) == "Spike"]
    quiet = [t for t in tasks if truth_of(t) == "No spike"]
    assert len(spikes) >= 6 and len(quiet) >= 6
    labeled = spikes[:6] + quiet[:6]
    for task in labeled:  # a clinician labels 12 windows
        studio_client.annotations.create(id=task.id, result=[window_result(truth_of(task))])

    settings = Settings(label_studio_url=label_studio.url, label_studio_api_key=label_studio.token,
                        model_dir=tmp_path / "models", window_store_dir=root / "stores")
    engine = SpikeEngine(settings)
    assert engine.model_version(str(project.id)) == COLD_START_VERSION
    result = retrain_project(settings, str(project.id), client=studio_client, registry=engine.registry)

    assert result.promoted and result.n_labels == 12 and result.n_ranked == len(tasks) - 12
    assert "n_pseudo_labels" in result.metrics  # both classes labeled: unlabeled windows were offered
    last_run = json.loads((tmp_path / "models" / str(project.id) / "last_run.json").read_text())
    assert last_run["version"] == result.version and {"training", "scoring", "pushing"} <= set(last_run["seconds"])
    assert studio_client.projects.get(project.id).model_version == result.version
    ranking = json.loads((tmp_path / "models" / str(project.id) / "ranking.json").read_text())["windows"]
    assert len(ranking) == len(tasks) - 12
    first_window = min(ranking, key=lambda w: ranking[w][0])
    response = httpx.get(f"{label_studio.url}/api/projects/{project.id}/next",
                         headers={"Authorization": f"Token {label_studio.token}"})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["window_id"] == first_window  # the labeling stream serves our first pick


@pytest.mark.slow
def test_before_any_label_the_cold_start_ranking_serves_likely_spikes_first(
    label_studio, studio_client, imported, tmp_path
):
    root, project = imported
    settings = Settings(label_studio_url=label_studio.url, label_studio_api_key=label_studio.token,
                        model_dir=tmp_path / "models", window_store_dir=root / "stores")
    result = retrain_project(settings, str(project.id), client=studio_client)
    assert result.version == COLD_START_VERSION and not result.promoted
    ranking = json.loads((tmp_path / "models" / str(project.id) / "ranking.json").read_text())["windows"]
    tasks = {t.data["window_id"]: t for t in studio_client.tasks.list(project=project.id, fields="all")}
    assert len(ranking) == len(tasks)
    first_ten = sorted(ranking, key=lambda w: ranking[w][0])[:10]
    share = np.mean([truth_of(tasks[w]) == "Spike" for w in first_ten])
    prevalence = np.mean([truth_of(t) == "Spike" for t in tasks.values()])
    assert share >= prevalence  # the detector's picks are at least as rich in spikes as the recording
    assert studio_client.projects.get(project.id).model_version == COLD_START_VERSION


def test_the_task_index_is_cached_and_only_new_tasks_are_listed(studio_client, imported, tmp_path, monkeypatch):
    root, project = imported
    listed = []
    real = studio.task_index
    monkeypatch.setattr(studio, "task_index", lambda c, p, after_id=0: listed.append(after_id) or real(c, p, after_id))
    state = ProjectState.of(tmp_path, project.id)
    first = cached_task_index(studio_client, state)
    assert listed == [0] and len(first) == studio_client.projects.get(project.id).task_number
    assert cached_task_index(studio_client, state) == first and listed == [0]  # nothing new: no listing

    meta = {"window_id": "extra-window", "store": "P03/extra.h5"}
    task = studio_client.tasks.create(project=project.id, data=studio_client.tasks.get(id=min(first)).data, meta=meta)
    assert cached_task_index(studio_client, state)[task.id] == WindowRef.parse(meta)
    assert listed == [0, max(first)]  # only the tasks after the cached ones

    studio_client.tasks.delete(id=task.id)
    studio_client.tasks.delete(id=min(first))
    after = cached_task_index(studio_client, state)
    assert set(after) == set(first) - {min(first)} and listed[-1] == 0  # deletions: everything listed again
