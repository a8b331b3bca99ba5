"""The retraining job: labels from Label Studio -> a trained, validated model -> a new ranking in Label Studio.

One code path for the webhook-triggered worker and for a command line run. Order matters for consistency: the
new model is promoted only after its checkpoint is on disk, and the project's ``model_version`` switches to it
only after every prediction of the new ranking was written, so a crash at any point leaves the previous model
and ranking serving, and the next trigger simply runs again.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from converters import studio

from . import budget
from .active.detector import TransientDetector, cold_start_arrays
from .active.inputs import PoolView
from .active.ranking import ranking_predictions
from .active.strategies import make_strategy
from .config import Settings
from .engine import COLD_START_VERSION, SpikeEngine
from .jobs import write_json_atomic
from .labels import TaskLabel, fetch_labels, is_spike
from .model.estimator import SpikeDetector
from .model.metrics import auprc
from .model.training import PseudoLabelParams, dense_targets, fit_with_pseudo_labels
from .preannotate import pre_annotation
from .stores import StoreCache
from .task_index import cached_task_index

logger = logging.getLogger(__name__)

MIN_VALIDATION = 10  # labels needed (with both classes) before a candidate must beat the serving model
BATCH = 256
PUSH_BATCH = 500
PRIORITY_TASKS = 2000  # tasks ranked and live first in a large project (about 15 s of scoring on 2 cores)
COLD_EPOCHS = 15  # the first model of a project
FINE_TUNE_EPOCHS = 5  # a model warm-started from the serving one, and the refit with pseudo-labels
PSEUDO_POOL = 500  # unlabeled windows offered to pseudo-labelling each run (confident ones join, weight 0.3)
# At most a fifth of them per class, so the second fit costs at most about twice the first.
PSEUDO_PARAMS = PseudoLabelParams(max_fraction=0.2)


@dataclass
class RetrainResult:
    project: str
    version: str | None
    promoted: bool
    n_labels: int
    metrics: dict = field(default_factory=dict)
    n_ranked: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, written to MODEL_DIR/<project>/last_run.json


class Stages(dict):
    """Seconds spent per stage of a run: ``with stages("training"): ...``; ``mark(name)``: seconds since the start."""

    def __init__(self):
        super().__init__()
        self.started_at = time.time()
        self._start = time.perf_counter()

    def mark(self, name: str) -> None:
        self[name] = time.perf_counter() - self._start

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start


def retrain_project(engine: SpikeEngine, project: str, client: Any = None, strategy: str = "mixed") -> RetrainResult:
    """Train on every label of ``project``, keep the model if it is not worse, push the ranking.

    Before the first label, push the cold-start ranking instead (likely spikes from the classical detector, and
    coverage of the recording), so the first tasks a clinician sees are already useful.
    """
    settings = engine.settings
    client = client or studio.connect(settings.label_studio_url, settings.label_studio_api_key)
    stages = Stages()
    with stages("labels"):
        labels = fetch_labels(client, int(project))
    with stages("task_index"):
        index = cached_task_index(client, engine.registry.project_dir(project), int(project))
    if labels:
        result = _retrain(engine, client, project, labels, index, strategy, stages)
    else:
        logger.info("project %s: no labels yet: cold-start ranking", project)
        n_ranked = push_ranking(
            engine, client, project, COLD_START_VERSION, index, set(), DetectorScorer, "cold_start", stages
        )
        result = RetrainResult(project, COLD_START_VERSION, False, 0, n_ranked=n_ranked)
    stages.mark("total")
    result.seconds = {name: round(value, 3) for name, value in stages.items()}
    run = {**asdict(result), "started_at": stages.started_at, "at": time.time()}
    write_json_atomic(engine.registry.project_dir(project) / "last_run.json", run)
    logger.info("project %s: run finished in %.1f s (%s)", project, stages["total"], result.seconds)
    return result


def _retrain(
    engine: SpikeEngine, client: Any, project: str, labels: list[TaskLabel], index: dict, strategy: str, stages: Stages
) -> RetrainResult:
    labeled = {lab.task_id for lab in labels}
    with stages("read_windows"):
        X, y, dense, sfreq = training_set(engine.settings, labels)
        X_free = unlabeled_sample(engine.settings, index, labeled, PSEUDO_POOL)
    current = engine.registry.load(project)
    with stages("training"):
        candidate, metrics = train_and_validate(X, y, dense, current[0] if current else None, sfreq, X_free=X_free)
    promoted = current is None or metrics["candidate_auprc"] >= metrics.get("serving_auprc", -1.0)
    if promoted:
        meta = {"labels_used": len(labels), "metrics": metrics, "parent_version": engine.model_version(project)}
        engine.registry.promote(project, candidate, meta)
    else:
        logger.info("project %s: candidate not better than the serving model (%s): kept it", project, metrics)
    detector, _ = engine.registry.load(project)
    base = engine.registry.current_version(project)
    if not promoted:  # the same model, new labels: a new ranking of it, under a version of its own
        base = rerank_version(base, engine.live_ranking(project).get("version"))
    version = budget.ranking_version(engine.settings, project, base, labels)
    scorer = partial(ModelScorer, detector)
    n_ranked = push_ranking(engine, client, project, version, index, labeled, scorer, strategy, stages)
    with stages("budget"):
        budget.after_retraining(engine.settings, client, project, labels)  # report, and summary in the description
    return RetrainResult(project, version, promoted, len(labels), metrics, n_ranked)


def unlabeled_sample(settings: Settings, index: dict, labeled: set[int], n: int, seed: int = 0) -> np.ndarray | None:
    """Up to ``n`` unlabeled windows of the project (for pseudo-labels), from one window store per draw."""
    free = sorted(t for t in index if t not in labeled)
    if not free or n <= 0:
        return None
    chosen = np.random.default_rng(seed).choice(free, min(n, len(free)), replace=False)
    stores = StoreCache(settings.window_store_dir)
    return np.stack([stores.windows({"id": int(t), "data": index[int(t)]}) for t in chosen])


def training_set(settings: Settings, labels: list[TaskLabel]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Windows, soft targets, dense targets (NaN rows where the time course is unknown) and their rate."""
    stores = StoreCache(settings.window_store_dir)
    X = np.stack(
        [
            stores.windows({"id": lab.task_id, "data": {"store": lab.store, "window_id": lab.window_id}})
            for lab in labels
        ]
    )
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
    X: np.ndarray,
    y: np.ndarray,
    dense: np.ndarray,
    serving: SpikeDetector | None,
    sfreq: float,
    seed: int = 0,
    X_free: np.ndarray | None = None,
) -> tuple[SpikeDetector, dict]:
    """Fit a candidate (warm from the serving model) and score both on a held-back slice of the labels.

    With unlabeled windows ``X_free`` and labels of both classes, confident ones join training as pseudo-labels
    (recomputed every run, never instead of a human label, never in the validation slice)."""
    rng = np.random.default_rng(seed)
    hard = is_spike(y)
    validation = np.zeros(len(y), bool)
    if len(y) >= MIN_VALIDATION and hard.any() and (~hard).any():
        for cls in (True, False):  # stratified: a fifth of each class, at least one
            rows = np.flatnonzero(hard == cls)
            validation[rng.choice(rows, max(1, len(rows) // 5), replace=False)] = True
    train = ~validation
    init = serving if serving is not None and serving.n_times_ == X.shape[2] else None
    candidate = SpikeDetector(sfreq=sfreq, seed=seed, epochs=FINE_TUNE_EPOCHS if init is not None else COLD_EPOCHS)
    metrics: dict = {"n_train": int(train.sum()), "n_validation": int(validation.sum())}
    if X_free is not None and hard[train].any() and (~hard[train]).any():
        candidate, rounds = fit_with_pseudo_labels(
            candidate,
            X[train],
            y[train],
            X_free,
            rounds=1,
            params=PSEUDO_PARAMS,
            init_from=init,
            dense_targets=dense[train],
            refit_epochs=FINE_TUNE_EPOCHS,
        )
        metrics["n_pseudo_labels"] = rounds[-1].n_pseudo_positive + rounds[-1].n_pseudo_negative
    else:
        candidate.fit(X[train], y[train], dense_targets=dense[train], init_from=init)
    if validation.any():
        metrics["candidate_auprc"] = auprc(hard[validation], candidate.predict_proba(X[validation]))
        if serving is not None:
            metrics["serving_auprc"] = auprc(hard[validation], serving.predict_proba(X[validation]))
    else:
        metrics["candidate_auprc"] = 0.0
        if min(hard.sum(), (~hard).sum()) >= 2:  # too few labels to hold some back: cross-validate instead
            metrics["cv_auprc"] = cross_validated_auprc(X, y, dense, init, sfreq, seed)
    return candidate, metrics


def cross_validated_auprc(
    X: np.ndarray, y: np.ndarray, dense: np.ndarray, init: SpikeDetector | None, sfreq: float, seed: int = 0
) -> float:
    """Out-of-fold AUPRC of a stratified k-fold (k = 3, or the minority count): a quality score while labels are
    too few for a held-back slice (each fit is on a handful of windows: cheap)."""
    hard = is_spike(y)
    folds = int(min(3, hard.sum(), (~hard).sum()))
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    for cls in (True, False):
        rows = rng.permutation(np.flatnonzero(hard == cls))
        fold[rows] = np.arange(len(rows)) % folds
    proba = np.empty(len(y))
    for k in range(folds):
        held = fold == k
        model = SpikeDetector(sfreq=sfreq, seed=seed).fit(
            X[~held], y[~held], dense_targets=dense[~held], init_from=init
        )
        proba[held] = model.predict_proba(X[held])
    return auprc(hard, proba)


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
            self.results.append(
                pre_annotation(
                    out["dense"][k],
                    out["channel"][k],
                    float(out["proba"][k]),
                    ch_names,
                    float(onsets[k]),
                    sfreq,
                    self.detector.threshold,
                    f"t{task_id}-",
                )
            )
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
    index: dict[int, dict[str, str]],
    labeled: set[int],
    new_scorer: Callable[[], ModelScorer | DetectorScorer],
    strategy: str = "mixed",
    stages: Stages | None = None,
) -> int:
    """Score the unlabeled tasks from the window stores, rank them, write predictions, then switch versions.

    Nothing is pushed when ``version`` is already live. A large project is ranked in two parts: first the
    ``PRIORITY_TASKS`` tasks most likely to matter (the best of the previous ranking, tasks it has not seen, and a
    random draw), whose ranking goes live at once; then the others, which follow them (scores above the first
    part's) and join the same version as they are written. The predictions of the version before the previous one
    are then deleted: the previous version's stay, because a clinician may have a task open with its
    pre-annotation, and Label Studio refuses to save an annotation whose parent prediction is gone (400).
    """
    stages = Stages() if stages is None else stages
    path = engine.registry.project_dir(project) / "ranking.json"
    previous = engine.live_ranking(project)
    if previous.get("version") == version:  # the serving model was kept: its ranking stands (labeled tasks drop out)
        logger.info("project %s: model %s kept, its ranking stays live", project, version)
        return 0
    parts = priority_parts([t for t in index if t not in labeled], index, previous.get("windows", {}))
    windows: dict[str, list] = {}
    for k, part in enumerate(parts):
        scorer = new_scorer()
        with stages("scoring"):
            part = _score_tasks(engine, scorer, part, index)
        with stages("ranking"):
            ranking = make_strategy(strategy).rank(scorer.pool(), batch_size=10, rng=0)
            predictions = ranking_predictions(part, ranking, version, scorer.results)
            for prediction in predictions:  # part k scores in [k, k + 1) / parts: the first part is served first
                prediction["score"] = (k + prediction["score"]) / len(parts)
        with stages("pushing"):
            for first in range(0, len(predictions), PUSH_BATCH):
                client.projects.import_predictions(id=int(project), request=predictions[first : first + PUSH_BATCH])
            windows |= {index[p["task"]]["window_id"]: [p["score"], p["cluster"]] for p in predictions}
            written = {"version": version, "previous_version": previous.get("version"), "windows": windows}
            write_json_atomic(path, written)
            if k == 0:
                client.projects.update(id=int(project), model_version=version, sampling=studio.SAMPLING)
                stages.mark("live")
                logger.info("project %s: ranking of %d tasks live as %s", project, len(part), version)
    with stages("cleanup"):
        _delete_old_ranking(client, project, previous.get("previous_version"), {version, previous.get("version")})
    return sum(len(part) for part in parts)


def priority_parts(
    task_ids: list[int], index: dict[int, dict[str, str]], previous: dict[str, list], seed: int = 0
) -> list[list[int]]:
    """``task_ids`` in one part, or two when there are more than ``PRIORITY_TASKS``: first the half of the priority
    part that the previous ranking put first (tasks it has not seen count as first), then a random draw."""
    if len(task_ids) <= PRIORITY_TASKS:
        return [task_ids] if task_ids else []
    before = np.array([previous.get(index[t]["window_id"], [0.0])[0] for t in task_ids])
    order = np.argsort(before, kind="stable")
    best, rest = order[: PRIORITY_TASKS // 2], order[PRIORITY_TASKS // 2 :]
    rng = np.random.default_rng(seed)
    drawn = rng.permutation(rest)
    first = np.sort(np.r_[best, drawn[: PRIORITY_TASKS - len(best)]])
    second = np.sort(drawn[PRIORITY_TASKS - len(best) :])
    return [[task_ids[i] for i in first], [task_ids[i] for i in second]]


def _score_tasks(
    engine: SpikeEngine, scorer: ModelScorer | DetectorScorer, task_ids: list[int], index: dict
) -> list[int]:
    """Feed the tasks' windows to ``scorer``, store by store; the task ids in the order they were scored."""
    by_store: dict[str, list[int]] = defaultdict(list)
    for task_id in task_ids:
        by_store[index[task_id]["store"]].append(task_id)
    stores = StoreCache(engine.settings.window_store_dir)
    order = []
    for store_key, tasks in by_store.items():
        store = stores.get(store_key)
        for first in range(0, len(tasks), BATCH):
            batch = tasks[first : first + BATCH]
            window_ids = [index[t]["window_id"] for t in batch]
            onsets = store.starts[store.rows(window_ids)] / store.sfreq
            scorer.add(store.read_windows(window_ids), onsets, store.ch_names, store.sfreq, batch)
            order.extend(batch)
    return order


def rerank_version(model_version: str, live: str | None) -> str:
    """The version of a new ranking by the serving model: ``p3-v0002``, then ``p3-v0002-r2``, ``p3-v0002-r3`` ..."""
    live = (live or "").removesuffix(budget.SPENT_SUFFIX)
    if live == model_version:
        return f"{model_version}-r2"
    found = re.fullmatch(re.escape(model_version) + r"-r(\d+)", live)
    return f"{model_version}-r{int(found.group(1)) + 1}" if found else model_version


def _delete_old_ranking(client: Any, project: str, old: str | None, kept: set[str | None]) -> None:
    """An old ranking's predictions, once a newer one is live (each run would otherwise add one per task)."""
    if old and old not in kept and (old == COLD_START_VERSION or old.startswith(f"p{project}-v")):
        try:
            studio.delete_predictions(client, int(project), old)
        except studio.StudioError as err:  # the new ranking is live: only the database keeps more rows
            logger.warning("project %s: %s", project, err)
