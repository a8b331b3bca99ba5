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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from converters import studio

from . import budget
from .active.ranking import ranking_predictions
from .config import Settings
from .engine import COLD_START_VERSION, SpikeEngine
from .failures import clear_failure, record_failure
from .jobs import write_json_atomic
from .labels import TaskLabel, fetch_labels
from .loop import Labeled, Plan, learn, pseudo_label_pool, rank
from .model.estimator import SpikeDetector
from .model.training import dense_targets
from .preannotate import model_pre_annotation
from .stores import StoreCache
from .task_index import cached_task_index

logger = logging.getLogger(__name__)

BATCH = 256
PUSH_BATCH = 500
PART_SPAN = 0.999  # part k of a ranking scores in [k, k + PART_SPAN] / parts: no tie with the next part's first
PRIORITY_TASKS = 2000  # tasks ranked and live first in a large project (about 15 s of scoring on 2 cores)
RANKING_BATCH = 10  # windows chosen jointly (no near-duplicates among them): what a clinician labels between runs
PLAN = Plan()  # how a retraining trains (epochs, validation, pseudo-labels): the replay benchmark's default too


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
    project_dir = engine.registry.project_dir(project)
    try:
        result = _run(engine, project, client, strategy)
    except Exception as err:
        failure = record_failure(project_dir, err)
        logger.error("project %s: %s", project, failure.line())
        budget.publish_failure(engine.settings, client, project, failure.line())
        raise
    if clear_failure(project_dir) is not None:  # the notice goes (the budget block was rewritten, or is now)
        budget.publish_failure(engine.settings, client, project, None)
    return result


def _run(engine: SpikeEngine, project: str, client: Any, strategy: str) -> RetrainResult:
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
        n_ranked = push_ranking(engine, client, project, COLD_START_VERSION, index, None, None, strategy, stages)
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
    with stages("read_windows"):
        labeled = training_set(engine.settings, labels)
        X_free = read_tasks(engine.settings, index, pseudo_label_pool(sorted(set(index) - set(labeled.ids))))
    current = engine.registry.load(project)
    with stages("training"):
        learned = learn(labeled, current[0] if current else None, PLAN, X_free=X_free)
    serving = engine.registry.current_version(project)
    if learned.promoted:
        meta = {"labels_used": len(labels), "metrics": learned.metrics, "parent_version": engine.model_version(project)}
        engine.registry.promote(project, learned.candidate, meta)
    base = engine.registry.current_version(project)
    if not learned.promoted:  # the same model, new labels: a new ranking of it, under a version of its own
        base = rerank_version(base, engine.live_ranking(project).get("version"))
    version = budget.ranking_version(engine.settings, project, base, labels)
    try:
        n_ranked = push_ranking(engine, client, project, version, index, labeled, learned.model, strategy, stages)
    except Exception:
        if learned.promoted and engine.live_ranking(project).get("version") != version:  # it never went live
            engine.registry.restore(project, serving)
        raise
    with stages("budget"):
        budget.after_retraining(engine.settings, client, project, labels)  # report, and summary in the description
    return RetrainResult(project, version, learned.promoted, len(labels), learned.metrics, n_ranked)


def read_tasks(settings: Settings, index: dict, task_ids: list[int]) -> np.ndarray | None:
    """The windows of ``task_ids`` (None for none)."""
    if not task_ids:
        return None
    stores = StoreCache(settings.window_store_dir)
    return np.stack([stores.windows({"id": int(t), "data": index[int(t)]}) for t in task_ids])


def training_set(settings: Settings, labels: list[TaskLabel]) -> Labeled:
    """Windows, soft targets and dense targets (NaN rows where the time course is unknown) of the labeled tasks,
    in task order."""
    labels = sorted(labels, key=lambda lab: lab.task_id)
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
    return Labeled(X, y, dense, sfreq, ids=np.array([lab.task_id for lab in labels]))


def push_ranking(
    engine: SpikeEngine,
    client: Any,
    project: str,
    version: str,
    index: dict[int, dict[str, str]],
    labeled: Labeled | None,
    model: SpikeDetector | None,
    strategy: str = "mixed",
    stages: Stages | None = None,
) -> int:
    """Score the unlabeled tasks from the window stores, rank them, write predictions, then switch versions.

    ``labeled``: the labeled windows, with their task ids in ``labeled.ids``. Nothing is pushed when ``version``
    is already live. A large project is ranked in two parts: first the ``PRIORITY_TASKS`` tasks most likely to
    matter (the best of the previous ranking, tasks it has not seen, and a random draw), whose ranking goes live at
    once; then the others, which follow them (scores above the first part's) and join the same version as they are
    written. The predictions of the version before the previous one are then deleted: the previous version's stay,
    because a clinician may have a task open with its pre-annotation, and Label Studio refuses to save an annotation
    whose parent prediction is gone (400).
    """
    stages = Stages() if stages is None else stages
    path = engine.registry.project_dir(project) / "ranking.json"
    previous = engine.live_ranking(project)
    if previous.get("version") == version:  # the serving model was kept: its ranking stands (labeled tasks drop out)
        logger.info("project %s: model %s kept, its ranking stays live", project, version)
        return 0
    known = set() if labeled is None else set(labeled.ids)
    parts = priority_parts([t for t in index if t not in known], index, previous.get("windows", {}))
    windows: dict[str, list] = {}
    live = False
    try:
        for k, part in enumerate(parts):
            tasks = PoolTasks(engine.settings, index, part, model)
            with stages("scoring"):  # reading the windows, the model, the strategy
                batches = tasks.batches()
                ranking = rank(model, batches, labeled, strategy, RANKING_BATCH, 0, tasks.sfreq, on_batch=tasks.add)
                predictions = ranking_predictions(tasks.order, ranking, version, tasks.results if model else None)
                for prediction in predictions:  # part k scores in [k, k + 1) / parts: the first part is served first
                    prediction["score"] = (k + PART_SPAN * prediction["score"]) / len(parts)
            with stages("pushing"):
                for first in range(0, len(predictions), PUSH_BATCH):
                    batch = predictions[first : first + PUSH_BATCH]
                    client.projects.import_predictions(id=int(project), request=batch)
                windows |= {index[p["task"]]["window_id"]: [p["score"], p["cluster"]] for p in predictions}
                written = {"version": version, "previous_version": previous.get("version"), "windows": windows}
                write_json_atomic(path, written)
                if k == 0:
                    client.projects.update(id=int(project), model_version=version, sampling=studio.SAMPLING)
                    stages.mark("live")
                    live = True
                    logger.info("project %s: ranking of %d tasks live as %s", project, len(part), version)
    except Exception:
        if not live:  # never went live: the previous ranking stays, and this one's predictions would pile up
            if previous:
                write_json_atomic(path, previous)
            _delete_old_ranking(client, project, version, {previous.get("version")})
        raise
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


class PoolTasks:
    """Unlabeled tasks read from their window stores in batches (store by store) for :func:`~ls_backend.loop.rank`,
    and the pre-annotation of each from the model's outputs (``add``); ``order``: the task ids as read."""

    def __init__(self, settings: Settings, index: dict, task_ids: list[int], model: SpikeDetector | None):
        self.index = index
        self.model = model
        self.stores = StoreCache(settings.window_store_dir)
        self.by_store: dict[str, list[int]] = defaultdict(list)
        for task_id in task_ids:
            self.by_store[index[task_id]["store"]].append(task_id)
        first = next(iter(self.by_store), None)
        self.sfreq = self.stores.get(first).sfreq if first is not None else 256.0
        self.order: list[int] = []
        self.results: list[list[dict]] = []
        self._pending: list[tuple[list[int], np.ndarray, list[str]]] = []

    def batches(self) -> Iterator[np.ndarray]:
        for store_key, tasks in self.by_store.items():
            store = self.stores.get(store_key)
            for first in range(0, len(tasks), BATCH):
                batch = tasks[first : first + BATCH]
                window_ids = [self.index[t]["window_id"] for t in batch]
                self._pending.append((batch, store.starts[store.rows(window_ids)] / store.sfreq, store.ch_names))
                self.order.extend(batch)
                yield store.read_windows(window_ids)

    def add(self, out: dict[str, np.ndarray]) -> None:
        """Pre-annotations of the batch just scored, from the model's outputs."""
        batch, onsets, ch_names = self._pending.pop(0)
        for k, task_id in enumerate(batch):
            self.results.append(model_pre_annotation(self.model, out, k, ch_names, float(onsets[k]), f"t{task_id}-"))


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
