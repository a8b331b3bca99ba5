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
from converters.windows import WindowStore
from ls_backend.active.strategies import Strategy
from ls_backend.config import Settings
from ls_backend.engine import SpikeEngine
from ls_backend.project_state import COLD_START_VERSION, ProjectState
from ls_backend.replay import ReplayData, ReplaySettings, replay_round
from ls_backend.retrain import RANKING_BATCH, retrain_project
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


@pytest.mark.slow
def test_the_retraining_and_the_replay_rank_from_the_same_inputs(
    label_studio, studio_client, imported, tmp_path, monkeypatch
):
    """One path: after the same labels, the live retraining and a replay round train the same model, hand the
    strategy the same pool view and get the same ranking."""
    root, project = imported
    tasks = sorted(studio_client.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)
    spikes = [t for t in tasks if truth_of(t) == "Spike"][:6]
    quiet = [t for t in tasks if truth_of(t) == "No spike"][:6]
    for task in spikes + quiet:
        studio_client.annotations.create(id=task.id, result=[window_result(truth_of(task))])
    calls = []
    original = Strategy.rank

    def spy(self, pool, batch_size=10, rng=None):
        ranking = original(self, pool, batch_size, rng)
        calls.append((self.name, pool, batch_size, ranking))
        return ranking

    monkeypatch.setattr(Strategy, "rank", spy)
    settings = Settings(label_studio_url=label_studio.url, label_studio_api_key=label_studio.token,
                        model_dir=tmp_path / "models", window_store_dir=root / "stores")
    retrain_project(settings, str(project.id), client=studio_client)
    assert len(calls) == 1
    live = calls.pop()

    # The replay's side: the project's windows in task order, the oracle knowing the 12 labels
    store = WindowStore(next((root / "stores").rglob("*.h5")))
    pool_X = store.read_windows([t.data["window_id"] for t in tasks])
    targets = {t.id: float(truth_of(t) == "Spike") for t in spikes + quiet}
    pool_y = np.array([targets.get(t.id, 0.0) for t in tasks], np.float32)
    dense = np.full(pool_X.shape[::2], np.nan, np.float32)
    dense[pool_y == 0.0] = 0.0  # "No spike" from everyone: no spike anywhere; "Spike" alone: time course unknown
    data = ReplayData(pool_X, pool_y, pool_X[:2], pool_y[:2], pool_dense=dense)
    labeled = np.array([t.id in targets for t in tasks])
    replay_settings = ReplaySettings(batch_size=RANKING_BATCH, budget=12)
    _, ranking = replay_round(data, labeled, None, "mixed", replay_settings, 0, np.random.default_rng(0), store.sfreq)
    replayed = calls.pop()

    assert live[0] == replayed[0] == "mixed" and live[2] == replayed[2] == RANKING_BATCH
    given = live[1].fields_given()
    assert given == replayed[1].fields_given()
    assert {"proba", "embeddings", "detector_score", "labeled_embeddings", "labeled_y"} <= set(given)
    for name in given:
        np.testing.assert_allclose(getattr(live[1], name), getattr(replayed[1], name), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    np.testing.assert_array_equal(live[3].order, ranking.order)
    np.testing.assert_array_equal(live[3].cluster, ranking.cluster)
