"""The /detections/<project> page: behind the backend's auth, a clear message before the first detection, the
figure and tables after one (Flask's test client), and the page as a clinician sees it in Chromium."""

from __future__ import annotations

import base64
import json
from html import unescape

import pytest
from detect_helpers import MODEL_VERSION, synthetic_detection
from helpers import save_screenshot, serving

from converters.windows import WindowStore
from ls_backend.app import create_app
from ls_backend.config import Settings
from ls_backend.detect.exports import (
    POINTER,
    RecordingEvents,
    latest_detection,
    record_detection,
    write_detection_output,
)
from ls_backend.project_state import ProjectState

CREDENTIALS = {"username": "clinician", "password": "detections-test-pass"}
AUTH = {"Authorization": "Basic " + base64.b64encode(b"clinician:detections-test-pass").decode()}
INFO = {"model_version": MODEL_VERSION, "model": "project 4", "threshold": 0.5, "created": "2024-01-02T09:30:00+00:00",
        "command": "python -m ls_backend.detect --project 4"}  # fmt: skip


class NoEngine:
    """The page needs no model."""


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    """A detection output of a 2-minute synthetic recording (one event per true spike)."""
    root = tmp_path_factory.mktemp("detection")
    made = synthetic_detection(root, 120)
    with WindowStore(made.store) as store:
        recording = RecordingEvents.from_store(store, made.events)
    return write_detection_output(root / "detections" / "p4", [recording], INFO), recording


@pytest.fixture
def settings(tmp_path):
    return Settings(model_dir=tmp_path / "models", basic_auth_user=CREDENTIALS["username"],
                    basic_auth_pass=CREDENTIALS["password"])  # fmt: skip


def test_the_latest_detection_is_remembered_per_project(detection, settings, tmp_path):
    out, _ = detection
    state = ProjectState.of(settings.model_dir, 4)
    assert latest_detection(state) is None
    record_detection(state, out, INFO)
    assert latest_detection(state) == out.resolve()
    assert json.loads((state.dir / POINTER).read_text())["model_version"] == MODEL_VERSION
    record_detection(state, tmp_path / "moved-away", INFO)
    assert latest_detection(state) is None  # a folder that is gone is no detection


def test_the_page_needs_the_backend_credentials(settings):
    client = create_app(settings, NoEngine()).test_client()
    assert client.get("/detections/4").status_code == 401
    assert client.get("/detections/4", headers=AUTH).status_code == 404


def test_before_any_detection_the_page_says_which_command_to_run(settings):
    client = create_app(settings, NoEngine()).test_client()
    response = client.get("/detections/abc", headers=AUTH)
    assert response.status_code == 400 and "not a Label Studio project id" in response.get_data(as_text=True)
    ProjectState.of(settings.model_dir, 4).dir.mkdir(parents=True)
    response = client.get("/detections/4", headers=AUTH)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "no detection yet" in html
    assert "<pre id='command'>python -m ls_backend.detect --project 4 &lt;the patient&#x27;s window stores&gt;" in html


def test_the_page_shows_the_figure_rates_recordings_and_the_run(detection, settings):
    out, recording = detection
    record_detection(ProjectState.of(settings.model_dir, 4), out, INFO)
    response = create_app(settings, NoEngine()).test_client().get("/detections/4", headers=AUTH)
    html = unescape(response.get_data(as_text=True))
    assert response.status_code == 200 and response.mimetype == "text/html"
    png = base64.b64decode(html.split("data:image/png;base64,")[1].split('"')[0])
    assert png == (out / "report.png").read_bytes()
    n = len(recording.events)
    assert f"{n} spikes in 2.0 min of recording; most on Hp'2-Hp'3 (shaft Hp')" in html
    assert f"<td class='n'>{n}</td>" in html and "sub-04_task-rest" in html  # the recording's row
    assert html.count("<tr><td>Am'") == 4 and html.count("<tr><td>Hp'") == 4  # one rate row per channel
    assert MODEL_VERSION in html and "above threshold 0.5" in html and "2024-01-02T09:30:00" in html
    assert 'href="../report/4"' in html


def test_the_page_in_chromium(browser, detection, settings, tmp_path, request):
    out, recording = detection
    record_detection(ProjectState.of(settings.model_dir, 4), out, INFO)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, http_credentials=CREDENTIALS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        with serving(create_app(settings, NoEngine())) as url:
            response = page.goto(f"{url}/detections/4")
            assert response.status == 200 and page.title() == "Spikes found: project 4"
            numbers = {
                row.locator("th").inner_text(): row.locator("td").inner_text()
                for row in page.locator("#numbers tr").all()
            }
            assert numbers["Spikes"] == str(len(recording.events)) and numbers["Confirmed by a clinician"] == "1"
            assert numbers["Most active channels"].startswith("Hp'2-Hp'3")
            top = page.locator("#rates tr").nth(1).locator("td").all_inner_texts()
            assert top[:3] == ["Hp'", "Hp'2-Hp'3", str(len(recording.events))]
            width = page.locator("#figure").evaluate("img => img.complete ? img.naturalWidth : 0")
            assert width > 1000  # the figure decoded and drew
            shot = save_screenshot(page, "detections", tmp_path, full_page=True)
            page.locator("#report-link").click()
            page.wait_for_url("**/report/4")
            assert "no labels yet" in page.locator("h1").inner_text()  # the budget report of the same project
            assert errors == []
    finally:
        context.close()
    request.node.user_properties.append(("screenshot", str(shot)))
