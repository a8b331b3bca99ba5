"""The model side of the server: serving versions, pre-annotations and ranking scores for /predict."""

from __future__ import annotations

import logging

import numpy as np

from .active.detector import TransientDetector
from .budget.status import marked_version
from .config import Settings
from .preannotate import model_pre_annotation
from .project_state import COLD_START_VERSION, is_ranking_of, project_keys
from .registry import ModelRegistry

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

    def predict(self, project: str, windows: np.ndarray, tasks: list[dict]) -> list[dict]:
        loaded = self.registry.load(project)
        version = self.model_version(project)
        ranking = self._ranking(project)
        if loaded is None:
            scores = 1.0 - self.cold_start_detector.score(windows)
            return [self._entry([], s, version, ranking, task) for s, task in zip(scores, tasks)]
        detector, _ = loaded
        out = detector.predict_all(windows)
        entries = []
        for k, task in enumerate(tasks):
            data = task["data"]
            ch_names = [c.strip() for c in str(data.get("channels", "")).split(",")]
            onset = float(data.get("onset_seconds", 0.0))
            result = model_pre_annotation(detector, out, k, ch_names, onset, f"t{task.get('id')}-")
            score = abs(2.0 * float(out["proba"][k]) - 1.0)
            entries.append(self._entry(result, score, version, ranking, task))
        return entries

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
    def _entry(result: list, score: float, version: str, ranking: dict, task: dict) -> dict:
        entry = {"result": result, "score": float(np.clip(score, 0.0, 1.0)), "model_version": version}
        ranked = ranking.get(str(task["data"].get("window_id")))
        if ranked is not None:
            entry["score"], entry["cluster"] = float(ranked[0]), int(ranked[1])
        return entry
