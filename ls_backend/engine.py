"""The model side of the server: serving versions, pre-annotations and ranking scores for /predict."""

from __future__ import annotations

import logging

import numpy as np

from .active.transients import TransientDetector
from .budget.status import marked_version
from .config import Settings
from .preannotate import model_pre_annotations
from .project_state import COLD_START_VERSION, is_ranking_of, project_keys
from .registry import ModelRegistry
from .stores import Windows

logger = logging.getLogger(__name__)


class SpikeEngine:
    """Answers /setup and /predict from MODEL_DIR (see :class:`ls_backend.app.Engine`).

    The score of a task (low = label first) comes from the project's last ranking (``ranking.json``, written
    with the ranking pushed to Label Studio) when it knows the window; otherwise from the serving model's
    uncertainty (``|2p - 1|``: 0 for a coin flip), or before any model from the classical transient detector
    (likely spikes first).
    """

    def __init__(self, settings: Settings, registry: ModelRegistry | None = None):
        self.settings = settings
        self.registry = registry or ModelRegistry(settings.model_dir)
        self.cold_start_detector = TransientDetector()
        self._rankings: dict[str, tuple[int, dict]] = {}

    def model_version(self, project: str) -> str:
        """The version of the live ranking when it is the serving model's (``p3-v0002``, ``p3-v0002-r2``, with the
        budget mark), else the serving model's (its ranking is being pushed), or ``cold-start``."""
        version = self.registry.current_version(project)
        if version is None:
            return COLD_START_VERSION
        live = self.live_ranking(project).get("version") or ""
        if is_ranking_of(live, version):
            return live
        return marked_version(self.registry.state(project).dir, version)

    def versions(self, project: str | None = None) -> list[dict]:
        projects = [project] if project else project_keys(self.settings.model_dir)
        return [{"project": key, **meta} for key in projects for meta in self.registry.history(key)]

    def predict(self, project: str, windows: Windows, task_ids: list[object]) -> list[dict]:
        loaded = self.registry.load(project)
        version = self.model_version(project)
        ranking = self._ranking(project)
        if loaded is None:
            scores = 1.0 - self.cold_start_detector.score(windows.X)
            results: list[list[dict]] = [[] for _ in task_ids]
        else:
            model, _ = loaded
            out = model.predict_all(windows.X)
            results = model_pre_annotations(model, out, windows, task_ids)
            scores = np.abs(2.0 * out["proba"] - 1.0)
        return [
            self._entry(result, score, version, ranking.get(ref.window_id))
            for result, score, ref in zip(results, scores, windows.refs)
        ]

    def has_ranking(self, project: str) -> bool:
        return self.registry.state(project).ranking.exists()

    def _ranking(self, project: str) -> dict:
        """``{window_id: [score, cluster]}`` of the last pushed ranking."""
        return self.live_ranking(project).get("windows") or {}

    def live_ranking(self, project: str) -> dict:
        """The last pushed ranking (``ranking.json``: version, windows), re-read only when the file changes."""
        state = self.registry.state(project)
        try:
            stamp = state.ranking.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        cached = self._rankings.get(state.key)
        if cached is None or cached[0] != stamp:
            self._rankings[state.key] = cached = (stamp, state.live_ranking())
        return cached[1]

    @staticmethod
    def _entry(result: list, score: float, version: str, ranked: list | None) -> dict:
        """One prediction; ``ranked``: the window's ``[score, cluster]`` in the live ranking, if it is there."""
        entry = {"result": result, "score": float(np.clip(score, 0.0, 1.0)), "model_version": version}
        if ranked is not None:
            entry["score"], entry["cluster"] = float(ranked[0]), int(ranked[1])
        return entry
