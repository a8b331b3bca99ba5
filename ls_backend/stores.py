"""Model input for Label Studio tasks, read from the window stores the converters wrote (never from task data).

A task shows one window, named by a :class:`WindowRef` (store key and window id), which is parsed from a task's
data or a task index entry in one place (:meth:`WindowRef.parse`). :meth:`StoreCache.read` reads many windows at
once, store by store, by their rows in the store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from converters.windows import WindowStore


class TaskInputError(ValueError):
    """A task the backend cannot score (no window store reference, malformed data); names the task."""


@dataclass(frozen=True)
class WindowRef:
    """The window a task shows: its store (a path under WINDOW_STORE_DIR) and its id in that store."""

    store: str
    window_id: str

    @classmethod
    def parse(cls, data: object, task_id: object = None) -> WindowRef:
        """The window named by a task's ``data`` (or its task index entry): ``store`` and ``window_id``."""
        if not isinstance(data, Mapping) or not isinstance(data.get("store"), str) or not data.get("window_id"):
            raise TaskInputError(f"task {task_id}: data.store and data.window_id are required (import with converters)")
        return cls(data["store"], str(data["window_id"]))

    @classmethod
    def of_task(cls, task: object) -> WindowRef:
        """The window of a Label Studio task (``{"id", "data"}``)."""
        if not isinstance(task, Mapping):
            raise TaskInputError(f"a task must be a JSON object, got {type(task).__name__}")
        return cls.parse(task.get("data"), task.get("id"))

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Windows:
    """Windows read from their stores, in the order asked: model input ``X`` [n, n_chans, n_times]; per window its
    ``ref``, its onset in its recording (``onset_seconds``) and its store's channel names; ``sfreq`` (of the first
    store)."""

    refs: list[WindowRef]
    X: np.ndarray
    onset_seconds: np.ndarray
    ch_names: list[list[str]]
    sfreq: float

    def __len__(self) -> int:
        return len(self.refs)


class StoreCache:
    """Open window stores by store key, only inside WINDOW_STORE_DIR."""

    def __init__(self, root: Path, max_open: int = 32):
        self.root = root.resolve()
        self.max_open = max_open
        self._open: dict[str, WindowStore] = {}

    def read(self, refs: Sequence[WindowRef], task_ids: Sequence[object] | None = None) -> Windows:
        """The windows of ``refs`` (in that order; at least one); a window that cannot be read raises
        :class:`TaskInputError` naming its task (``task_ids``, in the order of ``refs``)."""
        task_ids = list(task_ids) if task_ids is not None else [None] * len(refs)
        by_store: dict[str, list[int]] = defaultdict(list)
        for k, ref in enumerate(refs):
            by_store[ref.store].append(k)
        ch_names: list[list[str]] = [[]] * len(refs)
        parts, onsets = [np.empty(0)] * len(refs), np.empty(len(refs))
        for key, positions in by_store.items():
            store = self.get(key, task_ids[positions[0]])
            rows = np.array([self.row(refs[k], task_ids[k]) for k in positions], np.int64)
            onsets[positions] = store.starts[rows] / store.sfreq
            for k, window in zip(positions, store.read_rows(rows)):
                parts[k], ch_names[k] = window, store.ch_names
        shapes = {part.shape for part in parts}
        if len(shapes) > 1:
            raise TaskInputError(f"tasks {task_ids}: their windows differ in shape {sorted(shapes)} (mixed stores)")
        return Windows(list(refs), np.stack(parts), onsets, ch_names, self.get(refs[0].store).sfreq)

    def row(self, ref: WindowRef, task_id: object = None) -> int:
        """The row of ``ref`` in its store; :class:`TaskInputError` naming the task when the store or window is
        unknown."""
        store = self.get(ref.store, task_id)
        try:
            return int(store.rows([ref.window_id])[0])
        except KeyError as err:
            raise TaskInputError(f"task {task_id}: {err.args[0]}") from None

    def get(self, key: str, task_id: object = None) -> WindowStore:
        """The open window store for a store key (opened on first use); a key that leads outside
        WINDOW_STORE_DIR is refused."""
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
