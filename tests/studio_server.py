"""A real Label Studio server for tests and benchmarks: started in a temporary folder, stopped as a whole.

``running_studio(folder)`` starts ``.venv-ls/bin/label-studio`` (or env ``LABEL_STUDIO_BIN``) with SQLite in
``folder``, a fixed login and token, and yields a :class:`StudioServer` once ``/health`` answers.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PREDICTIONS_IMPORT_FLAG = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"
STARTUP_TIMEOUT_SECONDS = 240.0  # the first start runs all migrations: 40-90 s on 2 cores

# Fixed credentials of the test server (a throwaway SQLite database in a temporary folder).
STUDIO_USERNAME = "tester@example.com"
STUDIO_PASSWORD = "spike-al-test-password"
STUDIO_TOKEN = "spikealtesttoken0123456789abcdef"


@dataclass(frozen=True)
class StudioServer:
    """A running Label Studio server (started by :func:`running_studio`)."""

    url: str
    token: str
    username: str
    password: str
    data_dir: Path
    startup_seconds: float = 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health_is_up(url: str, credentials: tuple[str, str] | None = None) -> bool:
    """Whether ``url``/health answers UP (with HTTP basic auth when ``credentials`` are given)."""
    request = urllib.request.Request(f"{url}/health")
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(credentials).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200 and b"UP" in response.read()
    except (urllib.error.URLError, OSError):
        return False


def log_tail(path: Path, n_lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n_lines:])
    except OSError:
        return "(no log)"


def server_env() -> dict[str, str]:
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
        # Importing predictions updates the counters of the imported tasks only, not of every task of the project
        # (off by default in 1.23: each request of 500 predictions then takes ~20 s in a 20,000-task project).
        **{PREDICTIONS_IMPORT_FLAG: "true"},
    )
    return env


def stop_process(process: subprocess.Popen) -> None:
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


class StudioStartError(RuntimeError):
    """The server is not installed, exited, or did not answer in time (the message has its log's tail)."""


@contextmanager
def running_studio(folder: Path, port: int | None = None) -> Iterator[StudioServer]:
    """A Label Studio server with its data in ``folder``; stopped (with its whole process group) on exit."""
    binary = Path(os.environ.get("LABEL_STUDIO_BIN", REPO_ROOT / ".venv-ls" / "bin" / "label-studio"))
    if not binary.exists():
        raise StudioStartError(
            f"Label Studio is not installed at {binary}: run scripts/install.sh (or set LABEL_STUDIO_BIN)"
        )
    url = f"http://localhost:{port or free_port()}"
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "server.log"
    command = [
        str(binary), "start",
        "--data-dir", str(folder / "data"),
        "-p", url.rsplit(":", 1)[1],
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
            env=server_env(),
            cwd=folder,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    try:
        _wait_until_up(process, url, log_path, started)
        yield StudioServer(url, STUDIO_TOKEN, STUDIO_USERNAME, STUDIO_PASSWORD, folder, time.monotonic() - started)
    finally:
        stop_process(process)


def _wait_until_up(process: subprocess.Popen, url: str, log_path: Path, started: float) -> None:
    while not health_is_up(url):
        if process.poll() is not None:
            raise StudioStartError(
                f"Label Studio exited with code {process.returncode} before answering {url}/health; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if time.monotonic() - started > STARTUP_TIMEOUT_SECONDS:
            raise StudioStartError(
                f"Label Studio did not answer {url}/health within {STARTUP_TIMEOUT_SECONDS:.0f} s; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(0.5)
