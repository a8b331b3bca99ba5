"""The retraining job: labels from Label Studio -> a trained, validated model -> a new ranking in Label Studio.

One code path for the webhook-triggered worker and for a command line run. Order matters for consistency: the
new model is promoted only after its checkpoint is on disk, and the project's ``model_version`` switches to it
only after every prediction of the new ranking was written, so a crash at any point leaves the previous model
and ranking serving, and the next trigger simply runs again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters import studio

from .active.detector import TransientDetector, cold_start_arrays
from .active.inputs import PoolView
from .active.ranking import ranking_predictions
from .active.strategies import make_strategy
from .config import Settings
from .engine import COLD_START_VERSION, SpikeEngine
from .jobs import write_json_atomic
from .labels import TaskLabel, fetch_labels
from .model.estimator import SpikeDetector
from .model.metrics import auprc
from .model.training import dense_targets
from .preannotate import pre_annotation
from .stores import StoreCache

logger = logging.getLogger(__name__)

MIN_VALIDATION = 10  # labels needed (with both classes) before a candidate must beat the serving model
BATCH = 256
PUSH_BATCH = 500


@dataclass
class RetrainResult:
    project: str
    version: str | None
    promoted: bool
    n_labels: int
    metrics: dict = field(default_factory=dict)
    n_ranked: int = 0


def retrain_project(engine: SpikeEngine, project: str, client: Any = None, strategy: str = "mixed") -> RetrainResult:
    """Train on every label of ``project``, keep the model if it is not worse, push the ranking.

    Before the first label, push the cold-start ranking instead (likely spikes from the classical detector, and
    coverage of the recording), so the first tasks a clinician sees are already useful.
    """
    settings = engine.settings
    client = client or studio.connect(settings.label_studio_url, settings.label_studio_api_key)
    labels = fetch_labels(client, int(project))
    if not labels:
        logger.info("project %s: no labels yet: cold-start ranking", project)
        n_ranked = push_ranking(engine, client, project, COLD_START_VERSION, set(), DetectorScorer(), "cold_start")
        return RetrainResult(project, COLD_START_VERSION, False, 0, n_ranked=n_ranked)
    X, y, dense, sfreq = training_set(settings, labels)
    current = engine.registry.load(project)
    candidate, metrics = train_and_validate(X, y, dense, current[0] if current else None, sfreq)
    promoted = current is None or metrics["candidate_auprc"] >= metrics.get("serving_auprc", -1.0)
    if promoted:
        meta = {"labels_used": len(labels), "metrics": metrics, "parent_version": engine.model_version(project)}
        engine.registry.promote(project, candidate, meta)
    else:
        logger.info("project %s: candidate not better than the serving model (%s): kept it", project, metrics)
    detector, _ = engine.registry.load(project)
    version = engine.registry.current_version(project)
    labeled = {lab.task_id for lab in labels}
    n_ranked = push_ranking(engine, client, project, version, labeled, ModelScorer(detector), strategy)
    return RetrainResult(project, version, promoted, len(labels), metrics, n_ranked)


def training_set(settings: Settings, labels: list[TaskLabel]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Windows, soft targets, dense targets (NaN rows where the time course is unknown) and their rate."""
    stores = StoreCache(settings.window_store_dir)
    X = np.stack([stores.windows({"id": lab.task_id, "data": {"store": lab.store, "window_id": lab.window_id}})
                  for lab in labels])
    y = np.array([lab.target for lab in labels], np.float32)
    sfreq = stores.get(labels[0].store).sfreq
    dense = np.full((len(labels), X.shape[2]), np.nan, np.float32)
    for k, lab in enumerate(labels):
        if lab.regions:
            dense[k] = dense_targets(lab.regions, X.shape[2], sfreq, lab.onset_seconds)
        elif lab.target == 0.0:
            dense[k] = 0.0  # "No spike" from everyone: no spike anywhere in the window
    return X, y, dense, sfreq


def train_and_validate(
    X: np.ndarray, y: np.ndarray, dense: np.ndarray, serving: SpikeDetector | None, sfreq: float, seed: int = 0
) -> tuple[SpikeDetector, dict]:
    """Fit a candidate (warm from the serving model) and score both on a held-back slice of the labels."""
    rng = np.random.default_rng(seed)
    hard = y >= 0.5
    validation = np.zeros(len(y), bool)
    if len(y) >= MIN_VALIDATION and hard.any() and (~hard).any():
        for cls in (True, False):  # stratified: a fifth of each class, at least one
            rows = np.flatnonzero(hard == cls)
            validation[rng.choice(rows, max(1, len(rows) // 5), replace=False)] = True
    train = ~validation
    init = serving if serving is not None and serving.n_times_ == X.shape[2] else None
    candidate = SpikeDetector(sfreq=sfreq, seed=seed)
    candidate.fit(X[train], y[train], dense_targets=dense[train], init_from=init)
    metrics: dict = {"n_train": int(train.sum()), "n_validation": int(validation.sum())}
    if validation.any():
        metrics["candidate_auprc"] = auprc(hard[validation], candidate.predict_proba(X[validation]))
        if serving is not None:
            metrics["serving_auprc"] = auprc(hard[validation], serving.predict_proba(X[validation]))
    else:
        metrics["candidate_auprc"] = 0.0
    return candidate, metrics


class ModelScorer:
    """Per-window outputs of the serving model: probability, embedding, and the pre-annotation."""

    def __init__(self, detector: SpikeDetector):
        self.detector = detector
        self.proba: list[np.ndarray] = []
        self.embeddings: list[np.ndarray] = []
        self.results: list[list[dict]] = []

    def add(self, windows: np.ndarray, onsets: np.ndarray, ch_names: list[str], sfreq: float, task_ids: list) -> None:
        out = self.detector.predict_all(windows)
        for k, task_id in enumerate(task_ids):
            self.results.append(pre_annotation(out["dense"][k], out["channel"][k], float(out["proba"][k]), ch_names,
                                               float(onsets[k]), sfreq, self.detector.threshold, f"t{task_id}-"))
        self.proba.append(out["proba"])
        self.embeddings.append(out["embedding"])

    def pool(self) -> PoolView:
        return PoolView(proba=np.concatenate(self.proba), embeddings=np.concatenate(self.embeddings))


class DetectorScorer:
    """Before any model: the classical transient detector's score, and its per-channel features for diversity."""

    def __init__(self):
        self.detector = TransientDetector()
        self.features: list[np.ndarray] = []
        self.results: list[list[dict]] = []

    def add(self, windows: np.ndarray, onsets: np.ndarray, ch_names: list[str], sfreq: float, task_ids: list) -> None:
        self.features.append(self.detector.features(windows))
        self.results.extend([] for _ in task_ids)

    def pool(self) -> PoolView:
        return PoolView(**cold_start_arrays(np.concatenate(self.features), self.detector))


def push_ranking(
    engine: SpikeEngine,
    client: Any,
    project: str,
    version: str,
    labeled: set[int],
    scorer: ModelScorer | DetectorScorer,
    strategy: str = "mixed",
) -> int:
    """Score every unlabeled task from the window stores, rank them, write predictions, then switch versions."""
    index = studio.task_index(client, int(project))
    by_store: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for task_id, meta in index.items():
        if task_id not in labeled:
            by_store[meta["store"]].append((task_id, meta["window_id"]))
    stores = StoreCache(engine.settings.window_store_dir)
    task_ids: list[int] = []
    for store_key, tasks in by_store.items():
        store = stores.get(store_key)
        for first in range(0, len(tasks), BATCH):
            batch = tasks[first : first + BATCH]
            window_ids = [w for _, w in batch]
            onsets = store.starts[store.rows(window_ids)] / store.sfreq
            scorer.add(store.read_windows(window_ids), onsets, store.ch_names, store.sfreq, [t for t, _ in batch])
            task_ids.extend(t for t, _ in batch)
    if not task_ids:
        return 0
    ranking = make_strategy(strategy).rank(scorer.pool(), batch_size=10, rng=0)
    predictions = ranking_predictions(task_ids, ranking, version, scorer.results)
    for first in range(0, len(predictions), PUSH_BATCH):
        client.projects.import_predictions(id=int(project), request=predictions[first : first + PUSH_BATCH])
    windows = {index[t]["window_id"]: [p["score"], p["cluster"]] for t, p in zip(task_ids, predictions)}
    write_json_atomic(engine.registry.project_dir(project) / "ranking.json", {"version": version, "windows": windows})
    client.projects.update(id=int(project), model_version=version, sampling=studio.SAMPLING)
    logger.info("project %s: ranking of %d tasks live as %s", project, len(task_ids), version)
    return len(task_ids)
