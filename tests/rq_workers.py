"""RQ workers for tests: the deployed ``python -m ls_backend.worker`` processes, or an in-process worker (the test's
monkeypatches apply) that takes jobs while a command waits for them in a thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from redis import Redis
from rq import Queue, SimpleWorker
from studio_server import stop_process


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, dict]:
    """Run ``call`` in a thread; its result or exception lands in the returned dict."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = call()
        except Exception as err:  # noqa: BLE001 - handed to the test
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def work_until_done(redis_url: str, queue_name: str, thread: threading.Thread) -> None:
    """An in-process RQ worker (the test's patches apply) taking jobs until the waiting command is done."""
    connection = Redis.from_url(redis_url)
    while thread.is_alive():
        SimpleWorker([Queue(queue_name, connection=connection)], connection=connection).work(burst=True)
        thread.join(0.05)


@contextmanager
def worker_processes(redis_url: str, folder: Path, repo_root: Path, queues: list[str], n: int = 2) -> Iterator[Path]:
    """``n`` ``python -m ls_backend.worker`` processes, as deployed; yields their log. The ``queues`` are emptied
    when they stop."""
    env = os.environ | {"REDIS_URL": redis_url, "MODEL_DIR": str(folder / "models"), "LOG_LEVEL": "WARNING"}
    log = folder / "workers.log"
    command = [sys.executable, "-m", "ls_backend.worker"]
    with open(log, "w") as out:
        processes = [
            subprocess.Popen(
                command, env=env, cwd=repo_root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            for _ in range(n)
        ]
    try:
        yield log
    finally:
        for process in processes:
            stop_process(process)
        for name in queues:
            Queue(name, connection=Redis.from_url(redis_url)).empty()
