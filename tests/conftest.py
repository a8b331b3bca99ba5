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
studio_page     a fresh page logged in to the server; see :func:`helpers.logged_in_page` for
                ``page.console_errors``.
redis_url       (session) URL of a throwaway ``redis-server`` (Debian's package, or env ``REDIS_SERVER_BIN``).
backend         the ML backend under gunicorn as deployed (basic auth and a webhook secret), its settings in the
                test's environment so the importer connects it: :class:`helpers.BackendServer` (url, root, log).
                Helpers for it (``from helpers import ...``): :func:`import_patient`, :func:`wait_for`,
                :func:`wait_for_ranking`.

All tests share the one server: give projects unique titles and delete what you create.

Tests that use ``label_studio`` are marked ``studio`` automatically, tests that use ``browser`` are marked
``browser`` (and skipped with the reason when Chromium is absent), so ``-m "not studio"`` runs the fast part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    BACKEND_AUTH,
    BACKEND_CREDENTIALS,
    CHROMIUM,
    CHROMIUM_ARGS,
    BackendServer,
    logged_in_page,
    port_is_open,
)
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

# No background pretraining after an import in tests (minutes of CPU beside every other test) unless a test asks:
# the backends and workers it starts read the variable, retrainings in its own process the fixture below.
os.environ.setdefault("PRETRAIN_AFTER_IMPORT", "0")


@pytest.fixture(autouse=True)
def no_pretraining_after_import(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold start in this process starts no pretraining, unless the test is marked ``pretrain_after_import``."""
    if request.node.get_closest_marker("pretrain_after_import") is None:
        from ls_backend import pretraining

        monkeypatch.setattr(pretraining, "start_after_cold_start", lambda *args, **kwargs: None)


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
        while not port_is_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start:\n{log_tail(folder / 'redis.log')}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)


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


@pytest.fixture
def studio_page(browser: Any, label_studio: StudioServer) -> Iterator[Any]:
    """A page logged in to the test server (see :func:`logged_in_page`), closed after the test."""
    page = logged_in_page(browser, label_studio)
    try:
        yield page
    finally:
        page.context.close()


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
