"""Which window each task of a project shows, cached in ``MODEL_DIR/<project>/task_index.json``.

Listing a project's tasks costs Label Studio about 15-20 ms a task (it loads every task row, time series included),
so 20,000 tasks take minutes: each run reads only the tasks newer than the cache (an id filter the server applies
before loading rows), and the whole list again only when the project's task count says tasks were deleted.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .project_state import ProjectState, read_json, write_json_atomic
from .stores import StoreCache, TaskInputError, WindowRef

logger = logging.getLogger(__name__)

Index = dict[int, WindowRef | None]  # None: a task imported without a window reference


def cached_task_index(client: Any, state: ProjectState) -> dict[int, WindowRef]:
    """The window of every task of the project imported with a window reference, by task id."""
    path, project_id = state.task_index, int(state.key)
    cached = _load(path)
    total = _task_count(client, project_id)
    if len(cached) != total:
        cached |= _listed(client, project_id, after_id=max(cached, default=0))
        if len(cached) != total:  # tasks were deleted (or the count moved meanwhile): read them all again
            logger.info("project %s: %d tasks cached, %d on the server: listing all", project_id, len(cached), total)
            cached = _listed(client, project_id)
        write_json_atomic(path, {"tasks": {str(k): ref and ref.to_dict() for k, ref in cached.items()}})
    return {task_id: ref for task_id, ref in cached.items() if ref is not None}


@dataclass(frozen=True)
class TaskWindow:
    """A window that is a task of the project: its task id, store key, window id and onset in its recording."""

    task_id: int
    store: str
    window_id: str
    onset_seconds: float


class TaskWindows:
    """The windows of a project's tasks placed in time, store by store (read from each store's window index on first
    use): which task windows a span of a recording overlaps."""

    def __init__(self, index: Mapping[int, WindowRef], stores: StoreCache):
        self.stores = stores
        self.by_store: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for task_id, ref in index.items():
            self.by_store[ref.store].append((task_id, ref.window_id))
        self._placed: dict[str, tuple[list[TaskWindow], np.ndarray, float]] = {}

    def overlapping(self, store: str, start: float, end: float) -> list[TaskWindow]:
        """The task windows of ``store`` that ``[start, end)`` (recording seconds) overlaps, in time order."""
        windows, onsets, seconds = self._place(store)
        hits = np.flatnonzero((onsets < end) & (onsets + seconds > start))
        return [windows[k] for k in hits]

    def _place(self, key: str) -> tuple[list[TaskWindow], np.ndarray, float]:
        if key not in self._placed:
            self._placed[key] = self._read(key) if key in self.by_store else ([], np.empty(0), 0.0)
        return self._placed[key]

    def _read(self, key: str) -> tuple[list[TaskWindow], np.ndarray, float]:
        tasks = self.by_store[key]
        store = self.stores.get(key, tasks[0][0])
        try:
            rows = store.rows([window_id for _, window_id in tasks])
        except KeyError as err:
            raise TaskInputError(f"tasks of store {key!r}: {err.args[0]}") from None
        onsets = store.starts[rows] / store.sfreq
        windows = sorted(
            (TaskWindow(task_id, key, window_id, float(onset)) for (task_id, window_id), onset in zip(tasks, onsets)),
            key=lambda window: window.onset_seconds,
        )
        return windows, np.array([w.onset_seconds for w in windows]), store.window_samples / store.sfreq


def _parse(entries: Mapping) -> Index:
    return {int(k): None if meta is None else WindowRef.parse(meta, k) for k, meta in entries.items()}


def _listed(client: Any, project_id: int, after_id: int = 0) -> Index:
    from converters import studio  # the Label Studio SDK, imported only where Label Studio is asked

    return _parse(studio.task_index(client, project_id, after_id=after_id))


def _task_count(client: Any, project_id: int) -> int:
    project = client.projects.get(id=project_id)
    return int(getattr(project, "task_number", None) or 0)


def _load(path: Path) -> Index:
    content = read_json(path)
    if content is None:
        return {}
    try:
        return _parse(content["tasks"])
    except (ValueError, KeyError, TypeError, AttributeError):  # TaskInputError is a ValueError
        logger.warning("%s is unreadable: listing the project's tasks again", path)
        return {}
