"""Which window each task of a project shows, cached in ``MODEL_DIR/<project>/task_index.json``.

Listing a project's tasks costs Label Studio about 15-20 ms a task (it loads every task row, time series included),
so 20,000 tasks take minutes: each run reads only the tasks newer than the cache (an id filter the server applies
before loading rows), and the whole list again only when the project's task count says tasks were deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from converters import studio

from .project_state import ProjectState, read_json, write_json_atomic
from .stores import WindowRef

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


def _parse(entries: Mapping) -> Index:
    return {int(k): None if meta is None else WindowRef.parse(meta, k) for k, meta in entries.items()}


def _listed(client: Any, project_id: int, after_id: int = 0) -> Index:
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
