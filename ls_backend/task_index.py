"""Which window each task of a project shows, cached in ``MODEL_DIR/<project>/task_index.json``.

Listing a project's tasks costs Label Studio about 15-20 ms a task (it loads every task row, time series included),
so 20,000 tasks take minutes: each run reads only the tasks newer than the cache (an id filter the server applies
before loading rows), and the whole list again only when the project's task count says tasks were deleted.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from converters import studio

from .project_state import ProjectState, write_json_atomic

logger = logging.getLogger(__name__)


def cached_task_index(client: Any, state: ProjectState) -> dict[int, dict[str, str]]:
    """``{task id: {"window_id", "store"}}`` of every task of the project imported with a window reference."""
    path, project_id = state.task_index, int(state.key)
    cached = _load(path)
    total = _task_count(client, project_id)
    if len(cached) != total:
        cached |= studio.task_index(client, project_id, after_id=max(cached, default=0))
        if len(cached) != total:  # tasks were deleted (or the count moved meanwhile): read them all again
            logger.info("project %s: %d tasks cached, %d on the server: listing all", project_id, len(cached), total)
            cached = studio.task_index(client, project_id)
        write_json_atomic(path, {"tasks": {str(k): v for k, v in cached.items()}})
    return {task_id: meta for task_id, meta in cached.items() if meta is not None}


def _task_count(client: Any, project_id: int) -> int:
    project = client.projects.get(id=project_id)
    return int(getattr(project, "task_number", None) or 0)


def _load(path: Path) -> dict[int, dict[str, str] | None]:
    try:
        return {int(k): v for k, v in json.loads(path.read_text())["tasks"].items()}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, OSError):
        logger.warning("%s is unreadable: listing the project's tasks again", path)
        return {}
