"""Model input for Label Studio tasks, read from the window stores the converters wrote (never from task data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class TaskInputError(ValueError):
    """A task the backend cannot score (no window store reference, malformed data); names the task."""


class StoreCache:
    """Open window stores by the task's ``data.store`` key, only inside WINDOW_STORE_DIR."""

    def __init__(self, root: Path, max_open: int = 32):
        self.root = root.resolve()
        self.max_open = max_open
        self._open: dict[str, Any] = {}

    def windows(self, task: dict) -> np.ndarray:
        """Model input ``[n_chans, n_times]`` of one task."""
        data = task.get("data") if isinstance(task, dict) else None
        task_id = task.get("id") if isinstance(task, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("store"), str) or not data.get("window_id"):
            raise TaskInputError(f"task {task_id}: data.store and data.window_id are required (import with converters)")
        store = self.get(data["store"], task_id)
        try:
            return store.read_windows([str(data["window_id"])])[0]
        except KeyError as err:
            raise TaskInputError(f"task {task_id}: {err.args[0]}") from None

    def get(self, key: str, task_id: object = None) -> Any:
        """The open :class:`~converters.windows.WindowStore` for a store key (opened on first use); a key that
        leads outside WINDOW_STORE_DIR is refused."""
        from converters.windows import WindowStore

        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise TaskInputError(f"task {task_id}: data.store {key!r} is outside WINDOW_STORE_DIR")
        if key not in self._open:
            if len(self._open) >= self.max_open:
                self._open.pop(next(iter(self._open))).close()
            try:
                self._open[key] = WindowStore(path)
            except (OSError, ValueError) as err:
                raise TaskInputError(f"task {task_id}: window store {key!r}: {err}") from None
        return self._open[key]
