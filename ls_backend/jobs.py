"""A persistent, coalescing retraining queue: one marker file per project in MODEL_DIR.

``request(project)`` only writes a small marker (so a webhook answers at once, and a restart loses nothing that
was acknowledged). A worker thread runs the job once the burst has been quiet for ``debounce_seconds``; requests
that arrive while a job runs bump the marker's generation, so another run follows and the last annotation of a
burst is always included. A file lock per project keeps two processes (gunicorn workers) from training the same
project at once. A job that raises keeps its marker and is retried after ``retry_seconds``.

With ``dispatch`` (see :mod:`ls_backend.worker`), each request also hands the project to an external queue (RQ), whose
workers call :meth:`RetrainQueue.run_when_due`: the markers stay the record of what was acknowledged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from .project_state import ProjectState, file_lock, project_key, project_keys, write_json_atomic

logger = logging.getLogger(__name__)


def rq_dispatch(redis_url: str) -> Callable[[str], None] | None:
    """The ``dispatch`` of a queue that requests retrainings: to RQ workers when ``REDIS_URL`` is set, else None."""
    if not redis_url:
        return None
    from .worker import RQDispatcher  # redis and rq: only where they are used

    return RQDispatcher(redis_url)


class RetrainQueue:
    """Queue retrainings per project; run them in a background thread (see module docstring)."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        job: Callable[[str], object],
        debounce_seconds: float = 5.0,
        retry_seconds: float = 60.0,
        poll_seconds: float = 0.5,
        dispatch: Callable[[str], None] | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.job = job
        self.debounce_seconds = debounce_seconds
        self.retry_seconds = retry_seconds
        self.poll_seconds = poll_seconds
        self.dispatch = dispatch
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- producers -------------------------------------------------------------------------------------

    def request(self, project: object, reason: str = "") -> None:
        """Record that ``project`` needs a retraining (cheap: one small file write under a lock)."""
        key = project_key(project)
        with self._locked(key, "marker"):
            marker = self._read_marker(key) or {"generation": 0, "reasons": {}}
            marker["generation"] += 1
            marker["last_request_at"] = time.time()
            marker["not_before"] = marker["last_request_at"] + self.debounce_seconds
            marker["reasons"][reason] = marker["reasons"].get(reason, 0) + 1
            write_json_atomic(self._marker_path(key), marker)
        self.counts["requested"] += 1
        if self.dispatch is not None:
            self.dispatch(key)

    def pending(self) -> list[str]:
        """Projects with a retraining queued (including ones left by a crash)."""
        return [key for key in project_keys(self.model_dir) if self._marker_path(key).exists()]

    # -- the worker ------------------------------------------------------------------------------------

    def run_due(self, now: float | None = None) -> list[str]:
        """Run every retraining whose burst is over; return the projects that ran (successfully or not)."""
        ran = []
        for key in self.pending():
            marker = self._read_marker(key)
            if marker is None or marker.get("not_before", 0) > (time.time() if now is None else now):
                continue
            if self._run_one(key, marker["generation"]) != "busy":
                ran.append(key)
        return ran

    def run_when_due(self, project: object, before_run: Callable[[], None] = lambda: None) -> str:
        """Wait for the project's burst to be quiet and for any run in progress, then run it (an external worker's
        job). ``before_run`` is called just before the job starts. Returns "done", "failed" or "idle" (nothing
        queued, e.g. a run in progress already included this request)."""
        key = project_key(project)
        while (marker := self._read_marker(key)) is not None and marker.get("not_before", 0) > time.time():
            time.sleep(min(marker["not_before"] - time.time(), self.poll_seconds))
        with self._locked(key, "run"):
            marker = self._read_marker(key)
            if marker is None:
                return "idle"
            before_run()
            return self._run_locked(key, marker["generation"])

    def start(self) -> None:
        """Start the background worker thread (idempotent)."""
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="retrain-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.run_due()
            except Exception:  # never let the worker die; the marker stays for the next round
                logger.exception("retraining worker round failed")

    def _run_one(self, key: str, generation: int) -> str:
        try:
            with self._locked(key, "run", blocking=False):
                return self._run_locked(key, generation)
        except BlockingIOError:  # another process is training this project; its next round sees our marker
            return "busy"

    def _run_locked(self, key: str, generation: int) -> str:
        logger.info("retraining project %s (request generation %d)", key, generation)
        try:
            self.job(key)
        except Exception:
            logger.exception("retraining project %s failed; retrying in %.0f s", key, self.retry_seconds)
            self.counts["failed"] += 1
            self._postpone(key, self.retry_seconds)
            return "failed"
        self.counts["done"] += 1
        self._clear_if_unchanged(key, generation)
        return "done"

    def _clear_if_unchanged(self, key: str, generation: int) -> None:
        with self._locked(key, "marker"):
            marker = self._read_marker(key)
            if marker is not None and marker["generation"] == generation:
                self._marker_path(key).unlink()

    def _postpone(self, key: str, seconds: float) -> None:
        with self._locked(key, "marker"):
            marker = self._read_marker(key)
            if marker is not None:
                marker["not_before"] = time.time() + seconds
                write_json_atomic(self._marker_path(key), marker)

    # -- files -----------------------------------------------------------------------------------------

    def _marker_path(self, key: str) -> Path:
        return ProjectState(self.model_dir, key).retrain_marker

    def _read_marker(self, key: str) -> dict | None:
        try:
            marker = json.loads(self._marker_path(key).read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, OSError):  # not JSON, not UTF-8, unreadable
            marker = None
        if _is_marker(marker):
            return marker
        logger.warning("project %s: unreadable retraining marker, queued again", key)
        return {"generation": 1, "not_before": 0, "reasons": {"recovered": 1}}

    def _locked(self, key: str, name: str, blocking: bool = True) -> AbstractContextManager[None]:
        return file_lock(ProjectState(self.model_dir, key).lock(name), blocking)


def _is_marker(marker: object) -> bool:
    """A marker as :meth:`RetrainQueue.request` writes it (anything else is recovered, not a crash of the round)."""
    return (
        isinstance(marker, dict)
        and type(marker.get("generation")) is int
        and isinstance(marker.get("not_before", 0), int | float)
        and isinstance(marker.get("reasons"), dict)
    )
