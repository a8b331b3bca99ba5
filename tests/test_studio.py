"""converters.studio against the real Label Studio server started by the suite (no mocks)."""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from converters import studio
from converters.studio import StudioError

CONFIG = (
    '<View><TimeSeries name="ts" value="$ts" valueType="json" timeColumn="time">'
    '<Channel column="ch0" legend="A1-A2"/></TimeSeries>'
    '<Choices name="window" toName="ts"><Choice value="Spike"/><Choice value="No spike"/></Choices></View>'
)
CONFIG_TWO_CHANNELS = CONFIG.replace(
    '<Channel column="ch0" legend="A1-A2"/>',
    '<Channel column="ch0" legend="A1-A2"/><Channel column="ch1" legend="B1-B2"/>',
)
SPIKE = [{"from_name": "window", "to_name": "ts", "type": "choices", "value": {"choices": ["Spike"]}}]


def make_task(window_id: str, n_times: int = 50, **extra: object) -> dict:
    """A small time-series task in the shape the importer produces."""
    times = [round(i * 0.01, 4) for i in range(n_times)]
    values = [round(math.sin(i / 3.0), 4) for i in range(n_times)]
    return {"data": {"ts": {"time": times, "ch0": values}, "window_id": window_id}, **extra}


def unique_title(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def task_ids(client, project_id: int) -> set[int]:
    return {task.id for task in client.tasks.list(project=project_id, fields="task_only", include="id")}


@pytest.fixture
def project(studio_client) -> Iterator:
    created, _ = studio.get_or_create_project(studio_client, unique_title("test"), CONFIG)
    yield created
    studio.delete_project(studio_client, created.id)


# -- connect -------------------------------------------------------------------------------------------


def test_connect_accepts_the_token(label_studio):
    client = studio.connect(label_studio.url, label_studio.token)
    assert client.users.whoami().email == label_studio.username


def test_connect_reads_the_environment(label_studio, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    assert studio.connect().users.whoami().email == label_studio.username


def test_connect_refused_port_is_not_reachable():
    import socket

    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StudioError, match=rf"Label Studio at http://127.0.0.1:{port} is not reachable"):
        studio.connect(f"http://127.0.0.1:{port}", "some-token")


def test_connect_without_a_key_says_which_variable(monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(StudioError, match="set LABEL_STUDIO_API_KEY"):
        studio.connect("http://127.0.0.1:9")


def test_connect_rejects_a_bad_token(label_studio):
    with pytest.raises(StudioError, match=r"rejected the API key \(HTTP 401\)"):
        studio.connect(label_studio.url, "not-a-valid-token")


# -- projects -------------------------------------------------------------------------------------------


def test_project_is_created_for_active_learning_then_reused(studio_client):
    title = unique_title("reuse")
    created, was_created = studio.get_or_create_project(studio_client, title, CONFIG, description="EEG")
    try:
        assert was_created
        assert created.title == title
        assert created.sampling == studio.SAMPLING
        assert created.show_collab_predictions is True
        reformatted = CONFIG.replace("><", ">\n  <").replace(
            'column="ch0" legend="A1-A2"', 'legend="A1-A2"  column="ch0"'
        )
        again, was_created = studio.get_or_create_project(studio_client, title, reformatted)
        assert not was_created
        assert again.id == created.id
    finally:
        studio.delete_project(studio_client, created.id)


def test_project_with_another_config_is_an_error(studio_client, project):
    with pytest.raises(StudioError) as error:
        studio.get_or_create_project(studio_client, project.title, CONFIG_TWO_CHANNELS)
    message = str(error.value)
    assert f"(id {project.id})" in message
    assert "channel list differs" in message
    assert "B1-B2" in message
    assert "\n" not in message


def test_invalid_config_reports_the_servers_message(studio_client):
    bad = '<View><Choices name="window" toName="ts"/></View>'
    with pytest.raises(StudioError, match="rejected the labeling config") as error:
        studio.get_or_create_project(studio_client, unique_title("invalid"), bad)
    assert "label_config" in str(error.value)


def test_duplicate_titles_are_an_error(studio_client):
    title = unique_title("twin")
    first = studio_client.projects.create(title=title, label_config=CONFIG)
    second = studio_client.projects.create(title=title, label_config=CONFIG)
    try:
        with pytest.raises(StudioError, match="2 projects titled"):
            studio.get_or_create_project(studio_client, title, CONFIG)
    finally:
        studio.delete_project(studio_client, first.id)
        studio.delete_project(studio_client, second.id)


# -- tasks ------------------------------------------------------------------------------------------------


def test_import_returns_ids_and_window_ids_are_listed(studio_client, project):
    tasks = [
        make_task("w1", predictions=[{"model_version": "v0", "score": 0.2, "result": SPIKE}]),
        make_task("w2", annotations=[{"result": SPIKE}]),
        make_task("w3"),
    ]
    ids = studio.import_tasks(studio_client, project.id, tasks, batch_size=2, progress=False)
    assert len(ids) == 3
    assert set(ids) == task_ids(studio_client, project.id)
    assert "meta" not in tasks[0]  # the caller's tasks are not modified
    assert studio.existing_window_ids(studio_client, project.id) == {"w1", "w2", "w3"}
    first = studio_client.tasks.get(ids[0])
    assert first.data["window_id"] == "w1"
    assert first.meta["window_id"] == "w1"
    assert first.total_predictions == 1
    assert studio_client.tasks.get(ids[1]).total_annotations == 1


def test_window_ids_of_tasks_imported_by_other_means(studio_client, project):
    studio_client.projects.import_tasks(id=project.id, request=[make_task("outside")])  # no meta
    studio.import_tasks(studio_client, project.id, [make_task("inside")], progress=False)
    assert studio.existing_window_ids(studio_client, project.id) == {"outside", "inside"}


def test_failing_batch_rolls_back_the_whole_import(studio_client, project):
    before = studio.import_tasks(studio_client, project.id, [make_task("kept")], progress=False)
    invalid = {"data": {"not_ts": [1, 2], "window_id": "broken"}}
    tasks = [make_task("a"), make_task("b"), make_task("c"), invalid]
    with pytest.raises(StudioError) as error:
        studio.import_tasks(studio_client, project.id, tasks, batch_size=2, progress=False)
    message = str(error.value)
    assert "batch 2 (tasks 3-4)" in message
    assert "task 4 (window_id 'broken')" in message
    assert '"ts" key is expected' in message
    assert "the 2 tasks of the earlier batches were deleted" in message
    assert "not_ts" not in message  # the server echoes the task: not repeated here
    assert task_ids(studio_client, project.id) == set(before)
    assert studio.existing_window_ids(studio_client, project.id) == {"kept"}


def test_window_ids_of_a_missing_project_is_an_error(studio_client):
    with pytest.raises(StudioError, match="listing the tasks of project 999999 failed: HTTP 404"):
        studio.existing_window_ids(studio_client, 999999)


def test_empty_import_does_nothing(studio_client, project):
    assert studio.import_tasks(studio_client, project.id, [], progress=False) == []


# -- ML backend -------------------------------------------------------------------------------------------


class _FakeBackend(BaseHTTPRequestHandler):
    """Answers the two calls Label Studio makes when a backend is added: /health and /setup."""

    def _answer(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self._answer({"status": "UP"})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer({"model_version": "test"} if self.path == "/setup" else {"results": []})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeBackend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_ml_backend_is_connected_once(studio_client, project, fake_backend):
    studio.connect_ml_backend(studio_client, project.id, fake_backend)
    studio.connect_ml_backend(studio_client, project.id, fake_backend + "/")
    backends = list(studio_client.ml.list(project=project.id))
    assert [backend.url for backend in backends] == [fake_backend]
    assert backends[0].title == "Spike detector"


def test_unreachable_ml_backend_is_a_clear_error(studio_client, project):
    with pytest.raises(StudioError, match="could not add the ML backend http://127.0.0.1:9 .*health check failed"):
        studio.connect_ml_backend(studio_client, project.id, "http://127.0.0.1:9")


def test_delete_project(studio_client):
    created, _ = studio.get_or_create_project(studio_client, unique_title("delete"), CONFIG)
    studio.delete_project(studio_client, created.id)
    with pytest.raises(StudioError, match=f"deleting project {created.id} failed: HTTP 404"):
        studio.delete_project(studio_client, created.id)
