"""Shared fixtures: one real Label Studio server per test run, Debian's Chromium, paths.

Fixtures
--------
repo_root       Path of the repository.
real_data_dir   Path of the real recordings folder (env ``SPIKE_AL_REAL_DATA``, or its default location);
                None when absent.
label_studio    (session) a running Label Studio server: :class:`StudioServer` (url, token, username,
                password, data_dir, startup_seconds). Started lazily, by the first test that asks for it,
                from ``.venv-ls/bin/label-studio`` (or env ``LABEL_STUDIO_BIN``); stopped at the end.
studio_client   ``label_studio_sdk.LabelStudio`` logged in with the server's token.
browser         (session) Playwright Chromium (``/usr/bin/chromium``, or env ``CHROMIUM_BIN``).
studio_page     a fresh page logged in to the server; see :func:`logged_in_page` (also importable:
                ``from conftest import logged_in_page``) for ``page.console_errors``.
redis_url       (session) URL of a throwaway ``redis-server`` (Debian's package, or env ``REDIS_SERVER_BIN``).
backend         the ML backend under gunicorn as deployed (basic auth and a webhook secret), its settings in the
                test's environment so the importer connects it: :class:`BackendServer` (url, root, log). Helpers
                for it, importable from conftest: :func:`import_patient`, :func:`wait_for`, :func:`wait_for_ranking`.

All tests share the one server: give projects unique titles and delete what you create.

Tests that use ``label_studio`` are marked ``studio`` automatically, tests that use ``browser`` are marked
``browser`` (and skipped with the reason when Chromium is absent), so ``-m "not studio"`` runs the fast part.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from studio_server import (
    REPO_ROOT,
    StudioServer,
    StudioStartError,
    free_port,
    health_is_up,
    log_tail,
    running_studio,
    stop_process,
)

pytest_plugins = ("skip_guard",)  # --allowed-skips FILE: fail on a skip FILE does not allow

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by the fixtures they use; skip browser tests when Chromium is absent."""
    no_chromium = pytest.mark.skip(reason=f"Debian's chromium is not installed at {CHROMIUM}")
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "label_studio" in names:
            item.add_marker(pytest.mark.studio)
        if "browser" in names:
            item.add_marker(pytest.mark.browser)
        if item.get_closest_marker("browser") and not Path(CHROMIUM).exists():
            item.add_marker(no_chromium)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def real_data_dir() -> Path | None:
    """The shared real recordings, or None when they are not next to the repository."""
    path = Path(os.environ.get("SPIKE_AL_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "real"))
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    """Start one real Label Studio server for the whole run (lazily) and stop it at the end."""
    try:
        with running_studio(tmp_path_factory.mktemp("label-studio")) as server:
            yield server
    except StudioStartError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free port, without persistence, for the run."""
    binary = os.environ.get("REDIS_SERVER_BIN", "redis-server")
    if shutil.which(binary) is None:
        pytest.fail(f"redis-server is not installed ({binary}): run scripts/install.sh (apt-get install redis-server)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=open(folder / "redis.log", "w"),  # noqa: SIM115 - the server owns it until it exits
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _port_is_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start:\n{log_tail(folder / 'redis.log')}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)


def _port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def studio_client(label_studio: StudioServer) -> Any:
    """An SDK client (``label_studio_sdk.LabelStudio``) for the test server."""
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=label_studio.url, api_key=label_studio.token)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright, shared by the run."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


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


@pytest.fixture
def studio_page(browser: Any, label_studio: StudioServer) -> Iterator[Any]:
    """A page logged in to the test server (see :func:`logged_in_page`), closed after the test."""
    page = logged_in_page(browser, label_studio)
    try:
        yield page
    finally:
        page.context.close()


class BackendServer(NamedTuple):
    """The ML backend started by the ``backend`` fixture: its URL and its folder (models/, stores/, backend.log)."""

    url: str
    root: Path

    @property
    def log(self) -> Path:
        return self.root / "backend.log"

    def ranking(self, project_id: int) -> dict | None:
        """The last ranking the backend pushed for the project (``{"version", "windows": {id: [score, cluster]}}``)."""
        path = self.root / "models" / str(project_id) / "ranking.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # not yet, or being replaced
            return None


@pytest.fixture
def backend(
    request: pytest.FixtureRequest, label_studio: StudioServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BackendServer]:
    """The backend under gunicorn, as the README runs it, with basic auth and a webhook secret (as deployed).

    Parametrized indirectly with ``"rq"``, retrainings go through Redis (``redis_url``) to a
    ``python -m ls_backend.worker`` process, whose output goes to the same log."""
    for name, value in BACKEND_AUTH.items():  # the importer connects the backend with the same settings
        monkeypatch.setenv(name, value)
    port = free_port()
    env = os.environ | {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "MODEL_DIR": str(tmp_path / "models"),
        "WINDOW_STORE_DIR": str(tmp_path / "stores"),
        "RETRAIN_DEBOUNCE_SECONDS": "1",
    }
    env.pop("REDIS_URL", None)  # retrain in the backend's own thread
    commands = [[str(Path(sys.executable).with_name("gunicorn")), "--bind", f"127.0.0.1:{port}", "--workers", "1",
                 "--threads", "4", "ls_backend.wsgi:app"]]  # fmt: skip
    if getattr(request, "param", "thread") == "rq":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
        commands.append([sys.executable, "-m", "ls_backend.worker"])
    server = BackendServer(f"http://127.0.0.1:{port}", tmp_path)
    with open(server.log, "w") as log:
        processes = [
            subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            for command in commands
        ]
    process = processes[0]
    try:
        deadline = time.monotonic() + 60
        while not health_is_up(server.url, BACKEND_CREDENTIALS):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the backend did not start:\n{log_tail(server.log)}")
            time.sleep(0.5)
        yield server
    finally:
        for each in processes:
            stop_process(each)


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
