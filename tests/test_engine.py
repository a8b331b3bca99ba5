"""/predict through the real engine: cold start from the transient detector, then a promoted model's regions."""

import json
import os

import numpy as np
import pytest

from converters.convert import convert_recording
from converters.synthetic import PATIENTS, write_edf
from converters.tasks import make_tasks
from converters.windows import WindowStore
from ls_backend.app import create_app
from ls_backend.config import Settings
from ls_backend.engine import SpikeEngine
from ls_backend.model.estimator import SpikeDetector
from ls_backend.project_state import COLD_START_VERSION
from ls_backend.registry import ModelRegistry


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    root = tmp_path_factory.mktemp("patient")
    source = write_edf(root / "rec.edf", PATIENTS["C"], 60)  # spike-wave, 12/min: ~12 spikes
    convert_recording(source, root / "stores" / "P" / "rec.h5")
    with WindowStore(root / "stores" / "P" / "rec.h5") as store:
        tasks = list(make_tasks(store, patient="P", recording="rec.edf", store_key="P/rec.h5", events="predictions"))
    for k, task in enumerate(tasks):
        task["id"] = k + 1
    return root, tasks


def truth(task):
    return task["predictions"][0]["result"][-1]["value"]["choices"] == ["Spike"]


def client_for(root, tmp_path):
    settings = Settings(model_dir=tmp_path / "models", window_store_dir=root / "stores")
    engine = SpikeEngine(settings)
    return create_app(settings, engine).test_client(), engine


def predict(client, tasks):
    body = {"project": "9.1700000000", "tasks": [{"id": t["id"], "data": t["data"]} for t in tasks]}
    response = client.post("/predict", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    return response.json["results"]


def test_cold_start_puts_likely_spikes_first(patient, tmp_path):
    root, tasks = patient
    client, _ = client_for(root, tmp_path)
    assert client.post("/setup", json={"project": "9.1"}).json["model_version"] == COLD_START_VERSION
    results = predict(client, tasks)
    scores = np.array([r["score"] for r in results])
    is_spike = np.array([truth(t) for t in tasks])
    assert is_spike.any() and (~is_spike).any()
    assert scores[is_spike].mean() < scores[~is_spike].mean()  # lower score = shown first


def test_a_promoted_model_pre_annotates_regions_inside_the_task(patient, tmp_path):
    root, tasks = patient
    client, engine = client_for(root, tmp_path)
    with WindowStore(root / "stores" / "P" / "rec.h5") as store:
        X = store.read_windows([t["data"]["window_id"] for t in tasks])
    y = np.array([truth(t) for t in tasks], np.float32)
    model = SpikeDetector(width=8, depth=2, epochs=8, batch_size=8, seed=0).fit(X, y)
    version = engine.registry.promote(9, model, {"labels_used": len(y)})
    assert client.post("/setup", json={"project": "9.1"}).json["model_version"] == version
    results = predict(client, tasks)
    assert all(r["model_version"] == version for r in results)
    for task, result in zip(tasks, results):
        onset, duration = task["data"]["onset_seconds"], task["data"]["duration_seconds"]
        assert result["result"][-1]["from_name"] == "window"
        for region in (r for r in result["result"] if r["type"] == "timeserieslabels"):
            assert onset <= region["value"]["start"] < region["value"]["end"] <= onset + duration
    predicted = np.array([r["result"][-1]["value"]["choices"] == ["Spike"] for r in results])
    proba = model.predict_proba(X)
    np.testing.assert_array_equal(predicted, proba >= model.threshold)  # the served model's own answer
    np.testing.assert_allclose([r["score"] for r in results], np.abs(2 * proba - 1), atol=1e-6)
    assert ModelRegistry(tmp_path / "models").current_version(9) == version


def test_scores_come_from_the_last_pushed_ranking(patient, tmp_path):
    root, tasks = patient
    client, engine = client_for(root, tmp_path)
    ranking_path = engine.registry.state(9).ranking
    ranking_path.parent.mkdir(parents=True)
    first = tasks[3]["data"]["window_id"]
    ranking_path.write_text(json.dumps({"version": "cold-start", "windows": {first: [0.0, 4]}}))
    results = predict(client, tasks)
    assert results[3]["score"] == 0.0 and results[3]["cluster"] == 4
    assert "cluster" not in results[0]  # a window the ranking does not know: the detector's score
    ranking_path.write_text(json.dumps({"version": "cold-start", "windows": {first: [0.7, 1]}}))
    os.utime(ranking_path, ns=(1, 10**18))  # a new ranking file is picked up
    assert predict(client, tasks)[3]["cluster"] == 1


def test_the_version_answered_is_the_live_ranking_of_the_serving_model(tmp_path):
    from model_helpers import TINY, toy_windows

    X, y = toy_windows()
    settings = Settings(model_dir=tmp_path / "models", window_store_dir=tmp_path / "stores")
    engine = SpikeEngine(settings)
    ModelRegistry(settings.model_dir).promote(1, SpikeDetector(**TINY).fit(X, y), {"labels_used": len(y)})
    ranking = settings.model_dir / "1" / "ranking.json"
    for live, answered in [("cold-start", "p1-v0001"), ("p1-v0001-r2", "p1-v0001-r2"), ("p1-v0001", "p1-v0001")]:
        ranking.write_text(json.dumps({"version": live, "windows": {}}))
        os.utime(ranking, ns=(0, len(live)))  # a new modification time for each write
        assert engine.model_version("1") == answered
