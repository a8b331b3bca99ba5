"""Shared fixtures: one real Label Studio server per test run, Debian's Chromium, paths.

Fixtures
--------
repo_root       Path of the repository.
real_data_dir   Path of the real recordings (``../shared/data/real`` next to the repository, or env
                ``SPIKE_AL_REAL_DATA``); None when absent.
label_studio    (session) a running Label Studio server: :class:`StudioServer` (url, token, username,
                password, data_dir, startup_seconds). Started lazily, by the first test that asks for it,
                from ``.venv-ls/bin/label-studio`` (or env ``LABEL_STUDIO_BIN``); stopped at the end.
studio_client   ``label_studio_sdk.LabelStudio`` logged in with the server's token.
browser         (session) Playwright Chromium (``/usr/bin/chromium``, or env ``CHROMIUM_BIN``).
studio_page     a fresh page logged in to the server; see :func:`logged_in_page` (also importable:
                ``from conftest import logged_in_page``) for ``page.console_errors``.
redis_url       (session) URL of a throwaway ``redis-server`` (Debian's package, or env ``REDIS_SERVER_BIN``).

All tests share the one server: give projects unique titles and delete what you create.

Tests that use ``label_studio`` are marked ``studio`` automatically, tests that use ``browser`` are marked
``browser`` (and skipped with the reason when Chromium is absent), so ``-m "not studio"`` runs the fast part.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
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
STARTUP_TIMEOUT_SECONDS = 240.0  # the first start runs all migrations: 40-90 s on 2 cores

# Fixed credentials of the test server (a throwaway SQLite database in a temporary folder).
STUDIO_USERNAME = "tester@example.com"
STUDIO_PASSWORD = "spike-al-test-password"
STUDIO_TOKEN = "spikealtesttoken0123456789abcdef"


@dataclass(frozen=True)
class StudioServer:
    """A running Label Studio server started by the test suite."""

    url: str
    token: str
    username: str
    password: str
    data_dir: Path
    startup_seconds: float = 0.0


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health_is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200 and b"UP" in response.read()
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(path: Path, n_lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n_lines:])
    except OSError:
        return "(no log)"


def _server_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # Isolate the test server from a developer's Label Studio / database settings.
        if not key.startswith(("LABEL_STUDIO_", "POSTGRE_", "DJANGO_"))
    }
    env.update(
        # Let ML backends on localhost be added (else: 403 "URL resolves to a reserved network address").
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
        # No calls out to the internet from the test server.
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        # Label Studio reports errors to HumanSignal's Sentry by default (server and pages): not from tests.
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    return env


def _stop(process: subprocess.Popen) -> None:
    """Terminate the server's whole process group (no orphans)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    """Start one real Label Studio server for the whole run (lazily) and stop it at the end."""
    binary = Path(os.environ.get("LABEL_STUDIO_BIN", REPO_ROOT / ".venv-ls" / "bin" / "label-studio"))
    if not binary.exists():
        pytest.fail(f"Label Studio is not installed at {binary}: run scripts/install.sh (or set LABEL_STUDIO_BIN)")
    data_dir = tmp_path_factory.mktemp("label-studio")
    port = _free_port()
    url = f"http://localhost:{port}"
    log_path = data_dir / "server.log"
    command = [
        str(binary), "start",
        "--data-dir", str(data_dir / "data"),
        "-p", str(port),
        "--host", url,
        "--no-browser",
        "--username", STUDIO_USERNAME,
        "--password", STUDIO_PASSWORD,
        "--user-token", STUDIO_TOKEN,
        "--enable-legacy-api-token",
    ]  # fmt: skip
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_server_env(),
            cwd=data_dir,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    try:
        while not _health_is_up(url):
            if process.poll() is not None:
                pytest.fail(
                    f"Label Studio exited with code {process.returncode} before answering {url}/health; "
                    f"last lines of {log_path}:\n{_log_tail(log_path)}"
                )
            if time.monotonic() - started > STARTUP_TIMEOUT_SECONDS:
                pytest.fail(
                    f"Label Studio did not answer {url}/health within {STARTUP_TIMEOUT_SECONDS:.0f} s; "
                    f"last lines of {log_path}:\n{_log_tail(log_path)}"
                )
            time.sleep(0.5)
        yield StudioServer(
            url=url,
            token=STUDIO_TOKEN,
            username=STUDIO_USERNAME,
            password=STUDIO_PASSWORD,
            data_dir=data_dir,
            startup_seconds=time.monotonic() - started,
        )
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free port, without persistence, for the run."""
    binary = os.environ.get("REDIS_SERVER_BIN", "redis-server")
    if shutil.which(binary) is None:
        pytest.fail(f"redis-server is not installed ({binary}): run scripts/install.sh (apt-get install redis-server)")
    port = _free_port()
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
                pytest.fail(f"redis-server did not start:\n{_log_tail(folder / 'redis.log')}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


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
