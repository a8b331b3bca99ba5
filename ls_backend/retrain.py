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
from converters.windows import WindowStore

from .active.inputs import PoolView
from .active.ranking import ranking_predictions
from .active.strategies import make_strategy
from .config import Settings
from .engine import SpikeEngine
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
    """Train on every label of ``project``, keep the model if it is not worse, push the ranking."""
    settings = engine.settings
    client = client or studio.connect(settings.label_studio_url, settings.label_studio_api_key)
    labels = fetch_labels(client, int(project))
    if not labels:
        logger.info("project %s: no labels yet, nothing to train", project)
        return RetrainResult(project, engine.registry.current_version(project), False, 0)
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
    n_ranked = push_ranking(engine, client, project, detector, version, {lab.task_id for lab in labels}, strategy)
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


def push_ranking(
    engine: SpikeEngine,
    client: Any,
    project: str,
    detector: SpikeDetector,
    version: str,
    labeled: set[int],
    strategy: str = "mixed",
) -> int:
    """Score every unlabeled task from the window stores, rank them, write predictions, then switch versions."""
    index = studio.task_index(client, int(project))
    by_store: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for task_id, meta in index.items():
        if task_id not in labeled:
            by_store[meta["store"]].append((task_id, meta["window_id"]))
    task_ids, proba, embeddings, results = [], [], [], []
    for store_key, tasks in by_store.items():
        with WindowStore(engine.settings.window_store_dir / store_key) as store:
            for first in range(0, len(tasks), BATCH):
                batch = tasks[first : first + BATCH]
                rows = store.rows([w for _, w in batch])
                out = detector.predict_all(store.read_windows([w for _, w in batch]))
                for k, (task_id, _) in enumerate(batch):
                    onset = float(store.starts[rows[k]] / store.sfreq)
                    results.append(pre_annotation(out["dense"][k], out["channel"][k], float(out["proba"][k]),
                                                  store.ch_names, onset, store.sfreq, detector.threshold,
                                                  f"t{task_id}-"))
                    task_ids.append(task_id)
                proba.append(out["proba"])
                embeddings.append(out["embedding"])
    if not task_ids:
        return 0
    pool = PoolView(proba=np.concatenate(proba), embeddings=np.concatenate(embeddings))
    ranking = make_strategy(strategy).rank(pool, batch_size=10, rng=0)
    predictions = ranking_predictions(task_ids, ranking, version, results)
    for first in range(0, len(predictions), PUSH_BATCH):
        client.projects.import_predictions(id=int(project), request=predictions[first : first + PUSH_BATCH])
    windows = {index[t]["window_id"]: [p["score"], p["cluster"]] for t, p in zip(task_ids, predictions)}
    write_json_atomic(engine.registry.project_dir(project) / "ranking.json", {"version": version, "windows": windows})
    client.projects.update(id=int(project), model_version=version, sampling=studio.SAMPLING)
    logger.info("project %s: ranking of %d tasks live as %s", project, len(task_ids), version)
    return len(task_ids)
