"""The clinician's loop end to end: Label Studio + the backend under gunicorn (basic auth and a webhook secret, as
deployed), webhooks, background retraining."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

import converters.cli as cli
from converters.labelconfig import window_result
from converters.synthetic import PATIENTS, write_bids

WAIT_SECONDS = 600  # how long to wait for background work before calling it lost (not a speed target)
AUTH = {"BASIC_AUTH_USER": "backend", "BASIC_AUTH_PASS": "backend-test-pass", "WEBHOOK_SECRET": "hook-test-secret"}
CREDENTIALS = (AUTH["BASIC_AUTH_USER"], AUTH["BASIC_AUTH_PASS"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def backend(label_studio, tmp_path):
    port = free_port()
    env = os.environ | {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "MODEL_DIR": str(tmp_path / "models"),
        "WINDOW_STORE_DIR": str(tmp_path / "stores"),
        "RETRAIN_DEBOUNCE_SECONDS": "1",
    } | AUTH
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log = open(tmp_path / "backend.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(gunicorn), "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4",
                             "ls_backend.wsgi:app"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{url}/health", timeout=1, auth=CREDENTIALS).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield url, tmp_path
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def wait_for(condition, what: str, log: Path):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"{what} did not happen; backend log:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_annotations_trigger_retraining_and_a_new_ranking(label_studio, studio_client, backend, monkeypatch):
    url, root = backend
    assert httpx.get(f"{url}/health").status_code == 401
    for name, value in AUTH.items():  # the importer connects the backend with the same settings
        monkeypatch.setenv(name, value)
    source = write_bids(root / "bids", "p04", PATIENTS["C"], 60)
    title = f"Spikes e2e {uuid.uuid4().hex[:6]}"
    args = [str(source), "--patient", "P04", "--project", title, "--url", label_studio.url, "--api-key",
            label_studio.token, "--store-dir", str(root / "stores"), "--events", "predictions", "--backend-url", url]
    assert cli.main(args) == 0
    project = next(p for p in studio_client.projects.list(title=title) if p.title == title)
    tasks = list(studio_client.tasks.list(project=project.id, fields="all"))
    truth = {t.id: t.predictions[0].result[-1]["value"]["choices"][0] for t in tasks}
    spikes = [t for t in tasks if truth[t.id] == "Spike"][:5]
    quiet = [t for t in tasks if truth[t.id] == "No spike"][:5]
    for task in spikes + quiet:  # as a clinician submits them, one webhook each
        studio_client.annotations.create(id=task.id, result=[window_result(truth[task.id])])

    log = root / "backend.log"
    version = wait_for(lambda: (v := studio_client.projects.get(project.id).model_version or "").startswith(
        f"p{project.id}-v") and v, "a retrained model version in Label Studio", log)
    ranking = json.loads((root / "models" / str(project.id) / "ranking.json").read_text())
    assert ranking["version"] == version
    first = min(ranking["windows"], key=lambda w: ranking["windows"][w][0])
    response = httpx.get(f"{label_studio.url}/api/projects/{project.id}/next",
                         headers={"Authorization": f"Token {label_studio.token}"})
    assert response.json()["data"]["window_id"] == first
    metrics = httpx.get(f"{url}/metrics", auth=CREDENTIALS).text
    assert "spike_backend_retrain_requests" in metrics
    done = int(next(line.split()[1] for line in metrics.splitlines() if line.startswith("spike_backend_retrain_done")))
    assert 1 <= done <= 4  # the cold-start ranking, then ten webhooks coalesced into one or two trainings
