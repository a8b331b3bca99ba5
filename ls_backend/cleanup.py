"""Old rankings' predictions, deleted from Label Studio in the background.

A new ranking goes live beside the previous one (a clinician may have a task open with its pre-annotation); the one
before becomes stale. Label Studio deletes a prediction per request (about 90 ms here, see
:func:`converters.studio.delete_prediction_ids`): minutes for a large head, which inside the retraining run delayed the
next ranking. So a stale version is only recorded (``stale_rankings.json`` in the project's folder: a crash loses
none), and one thread per process deletes the recorded versions a few predictions at a time. It pauses while a
retraining of the project is on its way to a live ranking (``ranking_due``), so the next ranking goes first, and it
never deletes the live or the previous version. While clinicians are labeling it deletes only a quarter of the
time (:data:`ACTIVE_DUTY`), so that their requests rarely meet a locked database.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from converters import studio

from .config import Settings
from .project_state import ProjectState, file_lock, project_keys, read_json, write_json_atomic

logger = logging.getLogger(__name__)

DELETE_CHUNK = 20  # predictions deleted between two looks at the project's ranking_due flag
DUE_MAX_AGE_SECONDS = 3600.0  # a ranking_due flag older than this was left by a crashed run: ignored
RETRY_SECONDS = 60.0  # after Label Studio failed a round
# While clinicians label (a retraining queued or finished within ACTIVE_SECONDS), Label Studio deletes only a
# quarter of the time: on SQLite, a request that finds the database locked by a deletion is retried by Label
# Studio after 1 s, and deleting without a pause put that second into 5 % of the labeling stream's requests.
ACTIVE_SECONDS = 300.0
ACTIVE_DUTY = 0.25


def stale_versions(state: ProjectState) -> list[str]:
    """The rankings whose predictions are still to be deleted, oldest first."""
    return list(_stale(state)["versions"])


def retire(state: ProjectState, versions: dict[str | None, list[int] | None]) -> None:
    """Record rankings to delete, each with the tasks it gave a prediction (None: unknown, every prediction of the
    project is listed to find them). Versions this project does not own (the recording's events) are ignored."""
    new = {v: tasks for v, tasks in versions.items() if v is not None and state.owns_version(v)}
    if new:
        with file_lock(state.lock("stale")):
            stale = _stale(state)
            known = {v: tasks for v, tasks in new.items() if tasks is not None}
            _write_stale(state, _unique(stale["versions"] + list(new)), stale["heads"] | known)


def delete_stale(client: Any, state: ProjectState, pause_seconds: float = 0.5) -> int:
    """Delete the predictions of the project's stale rankings (not the live or previous one); returns how many."""
    live = state.live_ranking()
    kept = {live.get("version"), live.get("previous_version")}
    stale = _stale(state)
    versions = {v for v in stale["versions"] if v not in kept}
    if not versions:
        return 0
    ids = _prediction_ids(client, state, versions, stale["heads"])
    for first in range(0, len(ids), DELETE_CHUNK):
        while state.ranking_due_since() > time.time() - DUE_MAX_AGE_SECONDS:  # a ranking is on its way: it first
            time.sleep(pause_seconds)
        started = time.perf_counter()
        studio.delete_prediction_ids(client, ids[first : first + DELETE_CHUNK])
        if labeling_active(state):
            time.sleep((time.perf_counter() - started) * (1 / ACTIVE_DUTY - 1))
    with file_lock(state.lock("stale")):
        stale = _stale(state)
        _write_stale(state, [v for v in stale["versions"] if v not in versions], stale["heads"])
    logger.info("project %s: %d predictions of %s deleted", state.key, len(ids), ", ".join(sorted(versions)))
    return len(ids)


def labeling_active(state: ProjectState) -> bool:
    """Whether clinicians are labeling the project: a retraining is queued, or one finished within
    :data:`ACTIVE_SECONDS`."""
    finished = (read_json(state.last_run) or {}).get("at", 0.0)
    return state.retrain_marker.exists() or time.time() - finished < ACTIVE_SECONDS


def _prediction_ids(client: Any, state: ProjectState, versions: set[str], heads: dict[str, list[int]]) -> list[int]:
    """The predictions of ``versions``: from their tasks where known (a few per task), else from the whole project's
    (every task's predictions, the recording's events included: slow in a large project)."""
    ids = []
    if unknown := {v for v in versions if v not in heads}:
        ids += studio.prediction_ids(client, int(state.key), unknown)
    tasks = sorted({t for v in versions if v in heads for t in heads[v]})
    return ids + studio.prediction_ids_of_tasks(client, tasks, versions - unknown)


def _stale(state: ProjectState) -> dict:
    stale = read_json(state.stale_rankings) or {}
    return {"versions": list(stale.get("versions", [])), "heads": dict(stale.get("heads", {}))}


def _write_stale(state: ProjectState, versions: list[str], heads: dict[str, list[int]]) -> None:
    """The stale rankings, with the heads of those among ``versions`` (under the ``stale`` lock)."""
    write_json_atomic(
        state.stale_rankings, {"versions": versions, "heads": {v: heads[v] for v in versions if v in heads}}
    )


class RankingCleaner:
    """One background thread deleting stale rankings of the projects handed to :meth:`submit`."""

    def __init__(self, retry_seconds: float = RETRY_SECONDS):
        self.retry_seconds = retry_seconds
        self._due: dict[str, tuple[Settings, float]] = {}  # project -> (its settings, not before)
        self._busy = False
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, settings: Settings, state: ProjectState) -> None:
        with self._wake:
            self._due[state.key] = (settings, 0.0)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="ranking-cleaner", daemon=True)
                self._thread.start()
            self._wake.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is left to delete; False on timeout (or while a failed round waits to be retried)."""
        with self._wake:
            return self._wake.wait_for(lambda: not self._due and not self._busy, timeout)

    def _loop(self) -> None:
        while True:
            with self._wake:
                self._busy = False
                self._wake.notify_all()
                self._wake.wait_for(lambda: any(t <= time.time() for _, t in self._due.values()), timeout=5.0)
                due = [k for k, (_, t) in self._due.items() if t <= time.time()]
                if not due:
                    continue
                key = due[0]
                settings, _ = self._due.pop(key)
                self._busy = True
            self._round(settings, ProjectState(settings.model_dir, key))

    def _round(self, settings: Settings, state: ProjectState) -> None:
        try:
            delete_stale(studio.connect(settings.label_studio_url, settings.label_studio_api_key), state)
        except Exception as err:  # Label Studio away or refusing: the versions stay recorded, tried again later
            logger.warning("project %s: deleting old rankings failed (%s); retrying in %.0f s", state.key, err,
                           self.retry_seconds)  # fmt: skip
            with self._wake:
                self._due.setdefault(state.key, (settings, time.time() + self.retry_seconds))


CLEANER = RankingCleaner()  # this process's cleaner (a retraining hands it the versions it retires)


def resume(settings: Settings) -> None:
    """Hand this process's cleaner the stale rankings left by a process that stopped before deleting them."""
    for key in project_keys(settings.model_dir):
        state = ProjectState(settings.model_dir, key)
        if stale_versions(state):
            CLEANER.submit(settings, state)


def _unique(versions: list[str]) -> list[str]:
    return list(dict.fromkeys(versions))
