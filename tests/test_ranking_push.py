"""Pushing rankings to the real Label Studio: a large project in two parts, old predictions deleted in the
background, and a failure at any point (an import that fails mid-push, a worker killed mid-run) leaves the previous
model and ranking serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import BACKGROUND_WAIT_SECONDS
from studio_server import log_tail
from test_studio import CONFIG

import converters.cli as cli
import ls_backend.retrain as retrain
from converters import studio
from converters.labelconfig import window_result
from converters.synthetic import PATIENTS, write_bids
from converters.tasks import EVENTS_MODEL_VERSION
from converters.windows import StoreWriter, window_ids
from ls_backend import cleanup
from ls_backend.config import Settings
from ls_backend.engine import SpikeEngine
from ls_backend.jobs import RetrainQueue
from ls_backend.loop import Learned, Plan
from ls_backend.task_index import cached_task_index
from ls_backend.worker import RQDispatcher

SFREQ = 256.0
WINDOW_SAMPLES = 64  # enough for the transient detector, small enough for thousands of windows


class PushFailed(RuntimeError):
    """The failure injected into a push."""


def write_store(path: Path, n_windows: int) -> list[str]:
    """A window store of noise with ``n_windows`` back-to-back windows; returns their ids."""
    signal = np.random.default_rng(0).standard_normal((2, n_windows * WINDOW_SAMPLES)).astype(np.float32)
    starts = np.arange(n_windows) * WINDOW_SAMPLES
    ids = window_ids("ab" * 32, starts, SFREQ, WINDOW_SAMPLES)
    writer = StoreWriter(path, 2, signal.shape[1])
    writer.append(signal)
    writer.write_index(ids, starts)
    writer.write_annotations([])
    writer.set_attrs(sfreq=SFREQ, ch_names=["A1-A2", "A2-A3"], channel_scale_uv=np.ones(2, np.float32),
                     window_samples=WINDOW_SAMPLES, stride_samples=WINDOW_SAMPLES, provenance={})  # fmt: skip
    writer.commit()
    return ids


def small_tasks_project(label_studio, client, root: Path, n_tasks: int) -> tuple[SpikeEngine, int, dict]:
    """A project of ``n_tasks`` tiny tasks backed by a window store; its engine and task index."""
    ids = write_store(root / "stores" / "P" / "rec.h5", n_tasks)
    tasks = [{"data": {"ts": {"time": [0.0, 0.01], "ch0": [0.0, 1.0]}, "window_id": w, "store": "P/rec.h5"}}
             for w in ids]  # fmt: skip
    project, _ = studio.get_or_create_project(client, f"push {uuid.uuid4().hex[:8]}", CONFIG)
    studio.import_tasks(client, project.id, tasks, progress=False)
    settings = Settings(label_studio_url=label_studio.url, label_studio_api_key=label_studio.token,
                        model_dir=root / "models", window_store_dir=root / "stores")  # fmt: skip
    engine = SpikeEngine(settings)
    index = cached_task_index(client, engine.registry.state(project.id))
    assert len(index) == n_tasks
    return engine, project.id, index


def predictions_per_task(client, project_id: int) -> dict[str, Counter]:
    """``{model_version: Counter({task id: predictions})}``, read from Label Studio."""
    counts: dict[str, Counter] = {}
    for prediction in client.predictions.list(project=project_id):
        counts.setdefault(prediction.model_version, Counter())[prediction.task] += 1
    return counts


def push(engine, client, project_id: int, version: str, index: dict) -> int:
    state = engine.registry.state(project_id)
    return retrain.push_ranking(engine.settings, client, state, version, index, None, None, "cold_start")


def retrain_now(engine: SpikeEngine, project_id: int, client) -> retrain.RetrainResult:
    """What the retraining queue runs for the project, with the engine's folders and registry."""
    return retrain.retrain_project(engine.settings, str(project_id), client=client, registry=engine.registry)


def record_calls(monkeypatch, client, calls: list[str], fail_after_imports: int | None = None) -> None:
    """Record the order of the push's calls to Label Studio; optionally fail the prediction imports after a few."""
    real_import, real_update = client.projects.import_predictions, client.projects.update

    def import_predictions(**kwargs):
        if fail_after_imports is not None and calls.count("import") >= fail_after_imports:
            raise PushFailed("Label Studio went away mid-push")
        calls.append("import")
        return real_import(**kwargs)

    def update(**kwargs):
        calls.append("update")
        return real_update(**kwargs)

    monkeypatch.setattr(client.projects, "import_predictions", import_predictions)
    monkeypatch.setattr(client.projects, "update", update)


@pytest.mark.slow
def test_a_large_project_goes_live_with_its_first_part_then_gets_the_rest(label_studio, studio_client, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    n_tasks = retrain.PRIORITY_TASKS + 300  # two parts with the real threshold
    monkeypatch.setattr(retrain, "WRITTEN_TASKS", retrain.PRIORITY_TASKS + 100)  # the head of the second part
    engine, project_id, index = small_tasks_project(label_studio, studio_client, tmp_path, n_tasks)
    try:
        calls: list[str] = []
        record_calls(monkeypatch, studio_client, calls)
        version = f"p{project_id}-v0001"
        assert push(engine, studio_client, project_id, version, index) == n_tasks

        first_batches = -(-retrain.PRIORITY_TASKS // retrain.PUSH_BATCH)
        assert calls == ["import"] * first_batches + ["update"] + ["import"]  # live after the first part only
        assert studio_client.projects.get(project_id).model_version == version
        counts = predictions_per_task(studio_client, project_id)
        scores = {p.task: p.score for p in studio_client.predictions.list(project=project_id)}
        assert set(counts) == {version} and counts[version] == Counter(dict.fromkeys(scores, 1))
        ranking = json.loads(engine.registry.state(project_id).ranking.read_text())
        assert ranking["version"] == version and len(ranking["windows"]) == n_tasks  # every task ranked
        first, second = retrain.priority_parts(list(index), index, {})
        assert len(first) == retrain.PRIORITY_TASKS and set(first) <= set(scores)
        written = [t for t in second if t in scores]
        assert len(written) == 100 and len(scores) == retrain.WRITTEN_TASKS  # only the head of the second part
        assert max(scores[t] for t in first) < min(scores[t] for t in written)  # the first part is served first
        ranked = {t: ranking["windows"][index[t].window_id][0] for t in second}
        assert max(ranked[t] for t in written) <= min(ranked[t] for t in second if t not in scores)
    finally:
        studio.delete_project(studio_client, project_id)


def test_a_third_ranking_deletes_the_first_and_keeps_the_previous(label_studio, studio_client, tmp_path):
    engine, project_id, index = small_tasks_project(label_studio, studio_client, tmp_path, 30)
    try:
        versions = [f"p{project_id}-v{n:04d}" for n in (1, 2, 3)]
        for version in versions:
            push(engine, studio_client, project_id, version, index)
        assert cleanup.CLEANER.wait_idle(BACKGROUND_WAIT_SECONDS)  # deleted in the background, after the run
        assert cleanup.stale_versions(engine.registry.state(project_id)) == []
        counts = predictions_per_task(studio_client, project_id)
        assert set(counts) == set(versions[1:])  # the oldest one's predictions are gone
        assert counts[versions[1]] == counts[versions[2]] == Counter(dict.fromkeys(index, 1))
        assert studio_client.projects.get(project_id).model_version == versions[2]
        heads = json.loads(engine.registry.state(project_id).ranking.read_text())["heads"]  # the next to delete
        assert sorted(heads) == versions[1:] and all(sorted(heads[v]) == sorted(index) for v in heads)
    finally:
        studio.delete_project(studio_client, project_id)


# -- failures during a retraining -------------------------------------------------------------------------


def truth_of(task) -> str:
    return task.predictions[0].result[-1]["value"]["choices"][0]  # the synthetic events, imported as predictions


def label(client, tasks: list, n_each: int) -> None:
    """Label ``n_each`` spike and ``n_each`` quiet windows among the unlabeled ``tasks``, as a clinician would."""
    free = [t for t in tasks if not t.total_annotations]
    for choice in ("Spike", "No spike"):
        for task in [t for t in free if truth_of(t) == choice][:n_each]:
            client.annotations.create(id=task.id, result=[window_result(choice)])


@pytest.fixture
def ranked_project(label_studio, studio_client, tmp_path, monkeypatch):
    """A synthetic patient's project with 12 labels, a first model and its ranking live; short trainings."""
    monkeypatch.setattr(retrain, "PLAN", Plan(cold_epochs=2, warm_epochs=1))
    source = write_bids(tmp_path / "bids", "p06", PATIENTS["C"], 80)
    title = f"Spikes failures {uuid.uuid4().hex[:6]}"
    args = [str(source), "--patient", "P06", "--project", title, "--url", label_studio.url, "--api-key",
            label_studio.token, "--store-dir", str(tmp_path / "stores"), "--events", "predictions"]  # fmt: skip
    assert cli.main(args) == 0
    project_id = next(p.id for p in studio_client.projects.list(title=title) if p.title == title)
    label(studio_client, list(studio_client.tasks.list(project=project_id, fields="all")), 6)
    settings = Settings(label_studio_url=label_studio.url, label_studio_api_key=label_studio.token,
                        model_dir=tmp_path / "models", window_store_dir=tmp_path / "stores")  # fmt: skip
    engine = SpikeEngine(settings)
    first = retrain_now(engine, project_id, studio_client)
    assert first.promoted and studio_client.projects.get(project_id).model_version == first.version
    label(studio_client, list(studio_client.tasks.list(project=project_id, fields="all")), 1)  # new labels since
    yield engine, project_id, first.version
    studio.delete_project(studio_client, project_id)


def assert_still_serving(client, engine: SpikeEngine, project_id: int, version: str) -> None:
    """Label Studio, the live ranking file and the model registry all still name ``version``."""
    assert client.projects.get(project_id).model_version == version
    assert json.loads(engine.registry.state(project_id).ranking.read_text())["version"] == version
    assert SpikeEngine(engine.settings).registry.current_version(str(project_id)) == version  # as a new process


def assert_ranked_once(client, project_id: int, version: str, kept: str) -> None:
    """Every unlabeled task has one prediction of the live ``version``; besides, only ``kept``'s (and the recording's
    events, imported as predictions) remain, once the old rankings' background deletion is done."""
    assert cleanup.CLEANER.wait_idle(BACKGROUND_WAIT_SECONDS)
    tasks = list(client.tasks.list(project=project_id, fields="task_only", include="id,total_annotations"))
    unlabeled = {t.id for t in tasks if not t.total_annotations}
    counts = predictions_per_task(client, project_id)
    assert counts[version] == Counter(dict.fromkeys(unlabeled, 1))
    left_behind = set(counts) - {version, kept, EVENTS_MODEL_VERSION}
    assert not left_behind, f"predictions of rankings that never went live were left behind: {left_behind}"


@pytest.mark.slow
def test_a_push_failing_mid_way_leaves_the_previous_model_and_ranking_serving(studio_client, ranked_project,
                                                                              monkeypatch):  # fmt: skip
    engine, project_id, previous = ranked_project
    monkeypatch.setattr(retrain, "PUSH_BATCH", 10)  # a few batches for the unlabeled windows
    real_learn = retrain.learn

    def better_candidate(*args, **kwargs):  # the new model must win, so that it is promoted before the push
        learned = real_learn(*args, **kwargs)
        return Learned(learned.candidate, learned.candidate, True, learned.metrics | {"candidate_auprc": 1.0})

    monkeypatch.setattr(retrain, "learn", better_candidate)
    with monkeypatch.context() as failing:
        record_calls(failing, studio_client, [], fail_after_imports=1)
        with pytest.raises(PushFailed):
            retrain_now(engine, project_id, studio_client)
    assert_still_serving(studio_client, engine, project_id, previous)
    assert engine.model_version(str(project_id)) == previous  # what /setup and /predict answer

    result = retrain_now(engine, project_id, studio_client)  # the next trigger
    assert result.version != previous and studio_client.projects.get(project_id).model_version == result.version
    assert engine.registry.current_version(str(project_id)) == result.version
    assert_ranked_once(studio_client, project_id, result.version, kept=previous)


def start_worker(redis_url: str, engine: SpikeEngine, label_studio, log: Path, *options: str) -> subprocess.Popen:
    """``python -m ls_backend.worker`` for the engine's folders, its output in ``log``."""
    settings = engine.settings
    env = os.environ | {"REDIS_URL": redis_url, "MODEL_DIR": str(settings.model_dir),
                        "WINDOW_STORE_DIR": str(settings.window_store_dir), "LABEL_STUDIO_URL": label_studio.url,
                        "LABEL_STUDIO_API_KEY": label_studio.token, "RETRAIN_DEBOUNCE_SECONDS": "0"}  # fmt: skip
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "ls_backend.worker", *options], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_the_previous_ranking_and_the_next_run_completes(
    label_studio, studio_client, ranked_project, redis_url, tmp_path
):
    engine, project_id, previous = ranked_project
    dispatcher = RQDispatcher(redis_url)
    dispatcher.queue.empty()
    log = tmp_path / "worker.log"
    killed = start_worker(redis_url, engine, label_studio, log)
    try:
        RetrainQueue(engine.settings.model_dir, lambda key: None, debounce_seconds=0, dispatch=dispatcher).request(
            project_id, "ANNOTATION_CREATED"
        )
        deadline = time.monotonic() + BACKGROUND_WAIT_SECONDS
        while f"retraining project {project_id}" not in log.read_text():  # the run started: kill it
            assert killed.poll() is None and time.monotonic() < deadline, log_tail(log, 40)
            time.sleep(0.05)
        killed.kill()
        killed.wait(60)
        assert_still_serving(studio_client, engine, project_id, previous)
        assert RetrainQueue(engine.settings.model_dir, lambda key: None).pending() == [str(project_id)]

        restarted = start_worker(redis_url, engine, label_studio, log, "--burst")  # requeues what was acknowledged
        assert restarted.wait(BACKGROUND_WAIT_SECONDS) == 0, log_tail(log, 40)
        live = studio_client.projects.get(project_id).model_version
        assert live != previous and live == engine.live_ranking(str(project_id))["version"]
        assert RetrainQueue(engine.settings.model_dir, lambda key: None).pending() == []
        assert_ranked_once(studio_client, project_id, live, kept=previous)
    finally:
        if killed.poll() is None:
            killed.kill()
        dispatcher.queue.empty()
        dispatcher.release(str(project_id))
