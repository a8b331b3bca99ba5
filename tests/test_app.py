"""The ML backend's HTTP layer (Flask test client; the model side is a small stand-in engine)."""

import base64
import json

import numpy as np
import pytest

from converters.windows import StoreWriter, window_ids, window_starts
from ls_backend.app import create_app, make_server_app
from ls_backend.config import Settings
from ls_backend.jobs import RetrainQueue


class EchoEngine:
    """Scores each window by its peak amplitude, so tests can check which window reached it."""

    def model_version(self, project):
        return f"v-{project}"

    def predict(self, project, windows, task_ids):
        assert len(windows) == len(task_ids)
        return [
            {"result": [], "score": float(np.abs(w).max()), "model_version": self.model_version(project)}
            for w in windows.X
        ]

    def versions(self, project=None):
        return [{"project": project, "version": "v"}]

    def has_ranking(self, project):
        return project == "4"


@pytest.fixture
def store_dir(tmp_path):
    root = tmp_path / "stores"
    writer = StoreWriter(root / "P" / "rec.h5", 2, 2048)
    signal = np.zeros((2, 2048), np.float32)
    signal[:, 600] = 5.0  # window 1 of 4 has a peak
    writer.append(signal)
    starts = window_starts(2048, 512, 512)
    writer.write_index(window_ids("f" * 64, starts, 256.0, 512), starts)
    writer.write_annotations([])
    writer.set_attrs(sfreq=256.0, ch_names=["A1-A2", "A2-A3"], channel_scale_uv=np.ones(2, np.float32),
                     window_samples=512, stride_samples=512, provenance={})
    writer.commit()
    return root


def make_client(tmp_path, store_dir, **overrides):
    settings = Settings(model_dir=tmp_path / "models", window_store_dir=store_dir, **overrides)
    queue = RetrainQueue(settings.model_dir, lambda key: None)
    app = create_app(settings, EchoEngine(), queue)
    return app.test_client(), queue


def task(task_id, window_id, store="P/rec.h5"):
    return {"id": task_id, "data": {"store": store, "window_id": window_id}}


def test_health_and_setup(tmp_path, store_dir):
    client, queue = make_client(tmp_path, store_dir, label_studio_api_key="token")
    assert client.get("/health").json["status"] == "UP" and client.get("/health").json["problems"] == []
    assert client.post("/setup", json={"project": "4.1700000000", "schema": "<View/>"}).json == {
        "model_version": "v-4"
    }
    assert queue.pending() == []  # project 4 has its ranking
    client.post("/setup", json={"project": "5.1700000000"})
    assert queue.pending() == ["5"]  # a new project: its cold-start ranking is queued


def test_predict_reads_the_store_and_isolates_bad_tasks(tmp_path, store_dir):
    client, _ = make_client(tmp_path, store_dir)
    ids = window_ids("f" * 64, window_starts(2048, 512, 512), 256.0, 512)
    tasks = [task(1, ids[1]), {"id": 2, "data": {"ts": {}}}, task(3, ids[0]), task(4, "nope"),
             task(5, ids[0], store="../../etc/passwd")]
    response = client.post("/predict", json={"project": "4.1", "tasks": tasks})
    assert response.status_code == 200
    results = response.json["results"]
    assert len(results) == 5
    assert results[0]["score"] == 5.0 and results[2]["score"] == 0.0  # the right windows reached the engine
    assert all(r["result"] == [] and r["score"] == 1.0 for r in (results[1], results[3], results[4]))


def test_webhook_queues_retraining_and_ignores_the_rest(tmp_path, store_dir):
    client, queue = make_client(tmp_path, store_dir)
    for _ in range(20):
        assert client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 7}}).status_code == 201
    assert queue.pending() == ["7"]
    assert client.post("/webhook", json={"action": "TASKS_CREATED", "project": {"id": 7}}).json["status"] == "ignored"
    assert client.post("/webhook", data="{not json", content_type="application/json").status_code == 400
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "spike_backend_retrain_requests 20" in metrics and "spike_backend_retrain_pending 1" in metrics


def test_basic_auth_and_webhook_secret(tmp_path, store_dir):
    client, _ = make_client(tmp_path, store_dir, basic_auth_user="u", basic_auth_pass="p", webhook_secret="s3")
    assert client.get("/health").status_code == 401
    token = base64.b64encode(b"u:p").decode()
    assert client.get("/health", headers={"Authorization": f"Basic {token}"}).status_code == 200
    hook = {"action": "START_TRAINING", "project": {"id": 2}}
    assert client.post("/webhook", json=hook).status_code == 401
    assert client.post("/webhook", json=hook, headers={"X-Webhook-Secret": "s3"}).status_code == 201
    assert client.post("/predict", json={}, headers={"X-Webhook-Secret": "s3"}).status_code == 401


def test_limits_and_errors_show_no_internals(tmp_path, store_dir):
    client, _ = make_client(tmp_path, store_dir, max_request_mb=0.01)
    big = json.dumps({"tasks": [{"data": "x" * 20_000}], "project": "1"})
    assert client.post("/predict", data=big, content_type="application/json").status_code == 413
    response = client.post("/setup", json={"project": "../../x"})
    assert response.status_code == 400 and "Traceback" not in response.get_data(as_text=True)
    assert client.post("/predict", json={"project": "1", "tasks": "no"}).status_code == 400


def test_settings_from_environment_name_bad_values():
    settings = Settings.from_env({"MODEL_DIR": "/data/models", "RETRAIN_DEBOUNCE_SECONDS": "2.5", "LOG_LEVEL": ""})
    assert str(settings.model_dir) == "/data/models" and settings.retrain_debounce_seconds == 2.5
    with pytest.raises(ValueError, match="MAX_REQUEST_MB='lots': expected a float"):
        Settings.from_env({"MAX_REQUEST_MB": "lots"})
    with pytest.raises(ValueError, match="BASIC_AUTH_USER and BASIC_AUTH_PASS"):
        Settings.from_env({"BASIC_AUTH_USER": "u"})


def test_a_backend_without_its_label_studio_token_says_so_at_start_and_in_health(
    tmp_path, store_dir, monkeypatch, caplog
):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("WINDOW_STORE_DIR", str(store_dir))
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with caplog.at_level("ERROR", logger="ls_backend.app"):
        app = make_server_app(lambda settings: EchoEngine(), lambda settings: lambda key: None)
    assert any("LABEL_STUDIO_API_KEY is not set" in r.getMessage() for r in caplog.records)
    health = app.test_client().get("/health").json
    assert health["status"] == "UP"  # pre-annotations still work
    assert len(health["problems"]) == 1 and "LABEL_STUDIO_API_KEY" in health["problems"][0]
