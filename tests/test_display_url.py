"""Display data by URL (``--display-url``): a task names its page, the backend draws it from the window store.

The route's answers (the same page as inline data, signature, errors, no basic auth, any origin), and in Chromium
against the real Label Studio and the backend under gunicorn: the editor fetches the page and draws every channel,
and Label Studio stores a URL instead of the traces.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from editor_waits import channel_rows, wait_for_traces
from helpers import import_patient

from converters.convert import convert_recording
from converters.display import DisplayLinks, parse_display_request, signing_key
from converters.labelconfig import make_label_config
from converters.synthetic import PATIENTS, write_edf
from converters.tasks import make_tasks, page_layout
from converters.windows import WindowStore
from ls_backend.app import create_app
from ls_backend.config import Settings
from ls_backend.jobs import RetrainQueue

STORE = "P/night.h5"
PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("display")
    source = write_edf(root / "night.edf", PATIENTS["C"], 30)
    convert_recording(source, root / "stores" / STORE)
    return root / "stores"


class NoEngine:
    def model_version(self, project):
        return "none"


def client_of(tmp_path: Path, store_dir: Path, password: str = ""):
    settings = Settings(model_dir=tmp_path / "models", window_store_dir=store_dir,
                        basic_auth_user="u" if password else "", basic_auth_pass=password)  # fmt: skip
    app = create_app(settings, NoEngine(), RetrainQueue(settings.model_dir, lambda key: None))
    return app.test_client()


def tasks_both_ways(store_dir: Path, key: bytes | None) -> tuple[list[dict], list[dict]]:
    """The same three tasks, inline and by URL."""
    with WindowStore(store_dir / STORE) as store:
        layout = page_layout([store])
        common = {"patient": "P", "recording": "night.edf", "store_key": STORE, "rows": [0, 5, len(store) - 1]}
        inline = list(make_tasks(store, **common, layout=layout))
        by_url = list(make_tasks(store, **common, layout=layout, display=DisplayLinks("http://eeg:9090", key)))
    return inline, by_url


def relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.mark.parametrize("password", ["", PASSWORD], ids=["open", "basic-auth"])
def test_the_route_serves_the_inline_page(store_dir, tmp_path, password):
    inline, by_url = tasks_both_ways(store_dir, signing_key(password))
    client = client_of(tmp_path, store_dir, password)
    for a, b in zip(inline, by_url, strict=True):
        assert {k: v for k, v in a["data"].items() if k != "ts"} == {k: v for k, v in b["data"].items() if k != "ts"}
        assert b["data"]["ts"].startswith("http://eeg:9090/display/P/night.h5?window=")
        response = client.get(relative(b["data"]["ts"]))  # no credentials, as the editor fetches it
        assert response.status_code == 200, response.json
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.json == a["data"]["ts"]
        assert len(json.dumps(b["data"])) < len(json.dumps(a["data"])) / 20


def test_a_tampered_or_unsigned_url_is_refused_when_the_backend_has_basic_auth(store_dir, tmp_path):
    _, by_url = tasks_both_ways(store_dir, signing_key(PASSWORD))
    client = client_of(tmp_path, store_dir, PASSWORD)
    url = relative(by_url[0]["data"]["ts"])
    assert client.get(url.replace("gain=", "gain=1")).status_code == 403
    assert client.get(url.split("&sig=")[0]).status_code == 403
    _, unsigned = tasks_both_ways(store_dir, signing_key("another password"))
    assert client.get(relative(unsigned[0]["data"]["ts"])).status_code == 403
    assert client.get("/health").status_code == 401  # the rest keeps its basic auth


def test_bad_requests_name_what_is_wrong(store_dir, tmp_path):
    client = client_of(tmp_path, store_dir)
    _, by_url = tasks_both_ways(store_dir, None)
    url = relative(by_url[0]["data"]["ts"])
    missing = client.get(url.replace("points=", "x="))
    assert missing.status_code == 400 and "'points' is missing" in missing.json["detail"]
    unknown = client.get(url.replace("window=", "window=nope"))
    assert unknown.status_code == 404 and "nope" in unknown.json["detail"]
    outside = client.get(url.replace("/display/P/night.h5", "/display/../secrets.h5"))
    assert outside.status_code in (400, 404)
    with pytest.raises(ValueError, match="gain > 0"):
        parse_display_request(STORE, {"window": "w", "gain": "-1", "context": "4", "points": "10"}, None)
    with pytest.raises(ValueError, match="expected http"):
        DisplayLinks("eeg:9090")


def test_the_label_config_fetches_by_url():
    assert 'valueType="url"' in make_label_config(["A1-A2"], display_by_url=True)
    assert 'valueType="json"' in make_label_config(["A1-A2"])


@pytest.mark.slow
def test_the_editor_draws_a_task_served_by_url(label_studio, studio_client, backend, studio_page, tmp_path):
    """Imported with ``--display-url`` into the real Label Studio; Chromium opens a task: every channel is drawn
    from the backend (basic auth on, so the URL is signed), the console is clean, the database holds only a URL."""
    source = write_edf(tmp_path / "night.edf", PATIENTS["A"], 60)
    project_id, _ = import_patient(label_studio, backend, source, f"U{uuid.uuid4().hex[:4]}", "--max-windows", "5",
                                   "--display-url", backend.url)  # fmt: skip
    task = next(iter(studio_client.tasks.list(project=project_id, fields="all")))
    assert task.data["ts"].startswith(f"{backend.url}/display/") and "&sig=" in task.data["ts"]
    names = task.data["channels"].split(", ")
    page = studio_page
    page.goto(f"{label_studio.url}/projects/{project_id}/data?task={task.id}")
    wait_for_traces(page, len(names) + 1)  # and the calibration row
    rows = channel_rows(page)
    assert [row["name"] for row in rows[:-1]] == names
    assert all(row["high"] > row["low"] for row in rows[:-1]), rows
    assert page.console_errors == []
