"""Helpers for the tests that run Label Studio, the browser and the backend (fixtures stay in conftest.py).

:func:`logged_in_page` opens a page logged in to the test server (``page.console_errors``);
:class:`BackendServer` is what the ``backend`` fixture yields; :func:`import_patient`, :func:`wait_for` and
:func:`wait_for_ranking` drive it; :func:`serving` serves a WSGI app in a thread; :func:`save_screenshot` keeps a
page's screenshot (and refreshes docs/screenshots/ with ``UPDATE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from studio_server import REPO_ROOT, StudioServer, log_tail

from ls_backend.project_state import ProjectState

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Console errors that are about the test machine, not about the page: kept apart in page.ignored_console_errors.
# /heidi-tips: the "tips" panel asks the server, which fetches them from GitHub; offline it answers 404
# (the panel then shows its built-in tips).
IGNORED_CONSOLE_ERRORS = ("/heidi-tips",)
BACKGROUND_WAIT_SECONDS = 600.0  # how long to wait for the backend's background work before calling it lost
BACKEND_AUTH = {"BASIC_AUTH_USER": "backend", "BASIC_AUTH_PASS": "backend-test-pass", "WEBHOOK_SECRET": "hook-secret"}
BACKEND_CREDENTIALS = (BACKEND_AUTH["BASIC_AUTH_USER"], BACKEND_AUTH["BASIC_AUTH_PASS"])
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"  # UPDATE_SCREENSHOTS=1 refreshes the ones in the docs


def save_screenshot(page: Any, name: str, folder: Path, full_page: bool = False) -> Path:
    """Screenshot into ``folder``; with ``UPDATE_SCREENSHOTS=1`` also a small palette PNG in docs/screenshots."""
    path = folder / f"{name}.png"
    page.screenshot(path=path, full_page=full_page)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        from PIL import Image

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
            small.save(SCREENSHOTS / path.name, optimize=True)
    return path


def port_is_open(port: int) -> bool:
    """Whether something listens on the local ``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def logged_in_page(browser: Any, label_studio: StudioServer, timeout_ms: float = 30_000) -> Any:
    """Open a new page (in its own context) logged in to the test server.

    The returned Playwright page carries ``page.console_errors``: a list of strings, one per browser
    console message of type "error" (``"console: <text> [<url>]"``) and per uncaught page error
    (``"pageerror: <message>"``), collected from the moment the page opens. Assert it is empty after
    the page has drawn: the labeling editor fails silently otherwise. Errors from the URLs in
    ``IGNORED_CONSOLE_ERRORS`` (offline noise) go to ``page.ignored_console_errors`` instead.
    Close the page with ``page.context.close()``.
    """
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    errors: list[str] = []
    ignored: list[str] = []
    page.console_errors = errors
    page.ignored_console_errors = ignored

    def on_console(message: Any) -> None:
        if message.type == "error":
            where = (message.location or {}).get("url") or ""
            text = f"console: {message.text}" + (f" [{where}]" if where else "")
            (ignored if any(known in where for known in IGNORED_CONSOLE_ERRORS) else errors).append(text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.goto(f"{label_studio.url}/user/login/")
    page.fill("input[name=email]", label_studio.username)
    page.fill("input[name=password]", label_studio.password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url)
    return page


class BackendServer(NamedTuple):
    """The ML backend started by the ``backend`` fixture: its URL and its folder (models/, stores/, backend.log)."""

    url: str
    root: Path

    @property
    def log(self) -> Path:
        return self.root / "backend.log"

    def ranking(self, project_id: int) -> dict | None:
        """The last ranking the backend pushed for the project (``{"version", "windows": {id: [score, cluster]}}``)."""
        return ProjectState.of(self.root / "models", project_id).live_ranking() or None  # None: not yet


def wait_for(condition: Callable[[], Any], what: str, log: Path) -> Any:
    """Poll ``condition`` until it returns something true (returned) or fail naming ``what``, with ``log``'s end."""
    deadline = time.monotonic() + BACKGROUND_WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"{what} did not happen within {BACKGROUND_WAIT_SECONDS:.0f} s; log:\n{log_tail(log, 60)}")


def wait_for_ranking(client: Any, backend: BackendServer, project_id: int, after: str | None = None) -> dict:
    """The backend's ranking once it is live in Label Studio (the project's ``model_version`` is its version),
    waiting for a version other than ``after``."""

    def live() -> dict | None:
        ranking = backend.ranking(project_id)
        version = client.projects.get(project_id).model_version
        if ranking and ranking["version"] == version and version != after:
            return ranking
        return None

    return wait_for(live, f"a ranking of project {project_id} newer than {after!r} in Label Studio", backend.log)


def import_patient(
    label_studio: StudioServer, backend: BackendServer, source: Path, patient: str, *options: str
) -> tuple[int, str]:
    """``python -m converters.import SOURCE --patient PATIENT`` into a new project connected to ``backend``;
    returns the project's id and title."""
    from label_studio_sdk import LabelStudio

    import converters.cli as cli

    title = f"Spikes {patient} {uuid.uuid4().hex[:6]}"
    args = [str(source), "--patient", patient, "--project", title, "--url", label_studio.url,
            "--api-key", label_studio.token, "--store-dir", str(backend.root / "stores"),
            "--backend-url", backend.url, *options]  # fmt: skip
    assert cli.main(args) == 0
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    return next(p.id for p in client.projects.list(title=title) if p.title == title), title


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve a WSGI app (e.g. the backend's Flask app) on a free local port in a thread; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
