"""The retraining job: labels from Label Studio -> a trained, validated model -> a new ranking in Label Studio.

One code path for the webhook-triggered worker and for a command line run. Order matters for consistency: the
new model is promoted only after its checkpoint is on disk, and the project's ``model_version`` switches to it
only after the first part of the new ranking was written. An error at any point leaves the previous model and
ranking serving (a promoted model whose ranking never went live is demoted again, its partial predictions
deleted), and the next trigger simply runs again. A process killed between the promotion and the switch leaves the
new model serving /predict beside the previous ranking until the next run, which the kept marker triggers.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from converters import studio

from . import budget, cleanup
from .active.ranking import ranking_predictions
from .config import Settings
from .failures import clear_failure, record_failure
from .labels import TaskLabel, project_labels
from .loop import SCORING_BATCH, Labeled, Plan, learn, pseudo_label_pool, rank
from .model.estimator import SpikeDetector
from .model.training import dense_targets
from .preannotate import model_pre_annotations
from .project_state import COLD_START_VERSION, ProjectState, rerank_version, write_json_atomic
from .registry import ModelRegistry
from .review.training import with_cluster_reviews
from .stores import StoreCache, WindowRef, Windows
from .task_index import cached_task_index

logger = logging.getLogger(__name__)

PUSH_BATCH = 500
PART_SPAN = 0.999  # part k of a ranking scores in [k, k + PART_SPAN] / parts: no tie with the next part's first
PRIORITY_TASKS = 2000  # tasks ranked and live first in a large project (about 15 s of scoring on 2 cores)
WRITTEN_TASKS = 500  # predictions written per ranking: the head Label Studio serves; the rest on demand (/predict)
RANKING_BATCH = 10  # windows chosen jointly (no near-duplicates among them): what a clinician labels between runs
ENCODER_CHALLENGE_LABELS = 100  # a model from the encoder challenges an older one up to this many labels
PLAN = Plan()  # how a retraining trains (epochs, validation, pseudo-labels): the replay benchmark's default too


@dataclass
class RetrainResult:
    project: str
    version: str | None
    promoted: bool
    n_labels: int
    metrics: dict = field(default_factory=dict)
    n_ranked: int = 0
    n_review_labels: int = 0  # members labeled by cluster review answers (ls_backend.review), weight REVIEW_WEIGHT
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


def retraining_job(settings: Settings, registry: ModelRegistry | None = None) -> Callable[[str], RetrainResult]:
    """The retraining queue's job: :func:`retrain_project` with these settings (the registry's models stay loaded
    between runs); old rankings a stopped process left are deleted in the background."""
    registry = registry or ModelRegistry(settings.model_dir)
    cleanup.resume(settings)
    return partial(retrain_project, settings, registry=registry)


def retrain_project(
    settings: Settings,
    project: str,
    client: Any = None,
    strategy: str = "mixed",
    registry: ModelRegistry | None = None,
) -> RetrainResult:
    """Train on every label of ``project``, keep the model if it is not worse, push the ranking.

    Before the first label, push the cold-start ranking instead (likely spikes from the classical detector, and
    coverage of the recording), so the first tasks a clinician sees are already useful.
    """
    registry = registry or ModelRegistry(settings.model_dir)
    state = registry.state(project)
    try:
        result = _run(settings, registry, state, client, strategy)
    except Exception as err:
        failure = record_failure(state.dir, err)
        logger.error("project %s: %s", state.key, failure.line())
        budget.publish_failure(settings, client, state.key, failure.line())
        raise
    if clear_failure(state.dir) is not None:  # the notice goes (the budget block was rewritten, or is now)
        budget.publish_failure(settings, client, state.key, None)
    return result


def _run(settings: Settings, registry: ModelRegistry, state: ProjectState, client: Any, strategy: str) -> RetrainResult:
    client = client or studio.connect(settings.label_studio_url, settings.label_studio_api_key)
    state.dir.mkdir(parents=True, exist_ok=True)
    state.ranking_due.touch()  # old rankings' deletion waits until this run's ranking is live (ls_backend.cleanup)
    try:
        return _run_due(settings, registry, state, client, strategy)
    finally:
        state.ranking_due.unlink(missing_ok=True)


def _run_due(
    settings: Settings, registry: ModelRegistry, state: ProjectState, client: Any, strategy: str
) -> RetrainResult:
    stages = Stages()
    with stages("task_index"):
        index = cached_task_index(client, state)
    with stages("labels"):  # answered tasks, and the task windows that regions drawn in their context label
        labels = project_labels(client, state, settings.window_store_dir, index)
    if labels:
        result = _retrain(settings, registry, client, state, labels, index, strategy, stages)
    else:
        logger.info("project %s: no labels yet: cold-start ranking", state.key)
        n_ranked = push_ranking(settings, client, state, COLD_START_VERSION, index, None, None, strategy, stages)
        result = RetrainResult(state.key, COLD_START_VERSION, False, 0, n_ranked=n_ranked)
        from .pretraining import project_stores, start_after_cold_start  # it imports this module's PLAN

        start_after_cold_start(settings, state.key, project_stores(index))
    stages.mark("total")
    result.seconds = {name: round(value, 3) for name, value in stages.items()}
    write_json_atomic(state.last_run, {**asdict(result), "started_at": stages.started_at, "at": time.time()})
    logger.info("project %s: run finished in %.1f s (%s)", state.key, stages["total"], result.seconds)
    return result


def _retrain(
    settings: Settings,
    registry: ModelRegistry,
    client: Any,
    state: ProjectState,
    labels: list[TaskLabel],
    index: dict,
    strategy: str,
    stages: Stages,
) -> RetrainResult:
    with stages("read_windows"):
        labeled = training_set(settings, labels)
        labeled, n_review = with_cluster_reviews(state, labels, labeled, settings.window_store_dir)
        X_free = read_tasks(settings, index, pseudo_label_pool(sorted(set(index) - labeled.id_set())))
    current = registry.load(state.key)
    with stages("training"):
        plan = registry.with_encoder(state.key, PLAN)  # a pretrained encoder, where one was made
        restart = encoder_arrived(plan, current, len(labels))
        learned = learn(labeled, current[0] if current else None, plan, X_free=X_free, restart=restart)
    serving = registry.current_version(state.key)
    if learned.promoted:
        meta = {"labels_used": len(labels), "metrics": learned.metrics, "from_encoder": plan.encoder is not None}
        base = registry.promote(state.key, learned.candidate, meta)
    else:  # the same model, new labels: a new ranking of it, under a version of its own
        assert serving is not None  # learn() promotes whenever no model serves
        base = rerank_version(serving, state.live_ranking().get("version"))
    version = budget.ranking_version(settings, state.key, base, labels)
    try:
        n_ranked = push_ranking(settings, client, state, version, index, labeled, learned.model, strategy, stages)
    except Exception:
        if learned.promoted and state.live_ranking().get("version") != version:  # it never went live
            registry.restore(state.key, serving)
        raise
    with stages("budget"):
        budget.after_retraining(settings, client, state.key, labels)  # report, and summary in the description
    if learned.promoted:  # the clusters follow the new model's embedding (after the ranking: nobody waits for it)
        with stages("review"):
            from .review.command import refresh_review  # matplotlib and the clustering, only when needed

            refresh_review(settings, state)
    return RetrainResult(state.key, version, learned.promoted, len(labels), learned.metrics, n_ranked, n_review)


def encoder_arrived(plan: Plan, current: tuple[SpikeDetector, dict] | None, n_labels: int = 0) -> bool:
    """Whether the serving model does not descend from the project's pretrained encoder (it was trained before the
    encoder was there) while the project has at most ``ENCODER_CHALLENGE_LABELS`` labels: then a candidate starts
    from the encoder and must beat it. A promoted model descends from the encoder whenever the plan had one (it
    started from it, or warm from a model that did). Past that many labels pretraining no longer pays (see
    docs/benchmarks.md), and a candidate trained afresh (``cold_epochs``) would take a large project's
    label-to-ranking time past its target, so retraining stays warm."""
    if plan.encoder is None or current is None or n_labels > ENCODER_CHALLENGE_LABELS:
        return False
    return not current[1].get("from_encoder", False)


def read_tasks(settings: Settings, index: dict[int, WindowRef], task_ids: list[int]) -> np.ndarray | None:
    """The windows of ``task_ids`` (None for none)."""
    if not task_ids:
        return None
    return StoreCache(settings.window_store_dir).read([index[t] for t in task_ids], task_ids).X


def training_set(settings: Settings, labels: list[TaskLabel]) -> Labeled:
    """Windows, soft targets and dense targets (NaN rows where the time course is unknown) of the labeled tasks,
    in task order."""
    labels = sorted(labels, key=lambda lab: lab.task_id)
    refs = [WindowRef(lab.store, lab.window_id) for lab in labels]
    windows = StoreCache(settings.window_store_dir).read(refs, [lab.task_id for lab in labels])
    X, sfreq = windows.X, windows.sfreq
    y = np.array([lab.target for lab in labels], np.float32)
    dense = np.full((len(labels), X.shape[2]), np.nan, np.float32)
    for k, lab in enumerate(labels):
        if lab.regions:
            dense[k] = dense_targets(lab.regions, X.shape[2], sfreq, lab.onset_seconds)
        elif lab.target == 0.0:
            dense[k] = 0.0  # "No spike" from everyone: no spike anywhere in the window
    return Labeled(X, y, dense, sfreq, ids=np.array([lab.task_id for lab in labels]))


def push_ranking(
    settings: Settings,
    client: Any,
    state: ProjectState,
    version: str,
    index: dict[int, WindowRef],
    labeled: Labeled | None,
    model: SpikeDetector | None,
    strategy: str = "mixed",
    stages: Stages | None = None,
) -> int:
    """Score the unlabeled tasks from the window stores, rank them, write predictions, then switch versions.

    ``labeled``: the labeled windows, with their task ids in ``labeled.ids``. Nothing is pushed when ``version``
    is already live. A large project is ranked in two parts: first the ``PRIORITY_TASKS`` tasks most likely to
    matter (the best of the previous ranking, tasks it has not seen, and a random draw), whose ranking goes live at
    once; then the others, which follow them (scores above the first part's). Every task is ranked (the backend's
    ranking, which ``/predict`` answers from), but only the first ``WRITTEN_TASKS`` get a prediction in Label Studio:
    its uncertainty sampling serves only tasks with a prediction of the live version, far more than a clinician labels
    before the next ranking, and a task opened outside the head is pre-annotated on demand (Label Studio asks
    ``/predict`` for a task without predictions). Writing, and later deleting, 100,000 predictions per ranking would
    cost Label Studio minutes each time. The predictions of the version before the previous one are then deleted in
    the background (:mod:`ls_backend.cleanup`): the previous version's stay, because a clinician may have a task open
    with its pre-annotation, and Label Studio refuses to save an annotation whose parent prediction is gone (400).
    """
    stages = Stages() if stages is None else stages
    project = state.key
    previous = state.live_ranking()
    if previous.get("version") == version:  # the serving model was kept: its ranking stands (labeled tasks drop out)
        logger.info("project %s: model %s kept, its ranking stays live", project, version)
        return 0
    known = set() if labeled is None else labeled.id_set()
    parts = priority_parts([t for t in index if t not in known], index, previous.get("windows", {}))
    windows: dict[str, list] = {}
    head: list[int] = []  # the tasks given a prediction of this version in Label Studio
    heads = {previous["version"]: previous.get("heads", {}).get(previous["version"])} if previous else {}
    live = False
    try:
        for k, part in enumerate(parts):
            tasks = PoolTasks(settings, index, part, model)
            with stages("scoring"):  # reading the windows, the model, the strategy
                batches = tasks.batches()
                ranking = rank(model, batches, labeled, strategy, RANKING_BATCH, 0, tasks.sfreq, on_batch=tasks.add)
                predictions = ranking_predictions(tasks.order, ranking, version, tasks.results if model else None)
                for prediction in predictions:  # part k scores in [k, k + 1) / parts: the first part is served first
                    prediction["score"] = (k + PART_SPAN * prediction["score"]) / len(parts)
            with stages("pushing"):
                written = sorted(predictions, key=lambda p: p["score"])[: max(0, WRITTEN_TASKS - len(windows))]
                for first in range(0, len(written), PUSH_BATCH):
                    batch = written[first : first + PUSH_BATCH]
                    client.projects.import_predictions(id=int(project), request=batch)
                    head += [p["task"] for p in batch]
                windows |= {index[p["task"]].window_id: [p["score"], p["cluster"]] for p in predictions}
                state.write_ranking(version, previous.get("version"), windows, heads | {version: head})
                if k == 0:
                    client.projects.update(id=int(project), model_version=version, sampling=studio.SAMPLING)
                    stages.mark("live")
                    live = True
                    state.ranking_due.unlink(missing_ok=True)
                    logger.info("project %s: ranking of %d tasks live as %s", project, len(part), version)
    except Exception:
        if not live:  # never went live: the previous ranking stays, and this one's predictions would pile up
            if previous:
                write_json_atomic(state.ranking, previous)
            _retire(settings, state, {version: head})
        raise
    old = previous.get("previous_version")
    _retire(settings, state, {old: previous.get("heads", {}).get(old)})
    return sum(len(part) for part in parts)


def priority_parts(
    task_ids: list[int], index: dict[int, WindowRef], previous: dict[str, list], seed: int = 0
) -> list[list[int]]:
    """``task_ids`` in one part, or two when there are more than ``PRIORITY_TASKS``: first the half of the priority
    part that the previous ranking put first (tasks it has not seen count as first), then a random draw."""
    if len(task_ids) <= PRIORITY_TASKS:
        return [task_ids] if task_ids else []
    before = np.array([previous.get(index[t].window_id, [0.0])[0] for t in task_ids])
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

    def __init__(
        self, settings: Settings, index: dict[int, WindowRef], task_ids: list[int], model: SpikeDetector | None
    ):
        self.index = index
        self.model = model
        self.stores = StoreCache(settings.window_store_dir)
        self.by_store: dict[str, list[int]] = defaultdict(list)
        for task_id in task_ids:
            self.by_store[index[task_id].store].append(task_id)
        first = next(iter(self.by_store), None)
        self.sfreq = self.stores.get(first).sfreq if first is not None else 256.0
        self.order: list[int] = []
        self.results: list[list[dict]] = []
        self._pending: list[tuple[list[int], Windows]] = []  # read, not yet pre-annotated (only with a model)

    def batches(self) -> Iterator[np.ndarray]:
        for tasks in self.by_store.values():
            for first in range(0, len(tasks), SCORING_BATCH):
                batch = tasks[first : first + SCORING_BATCH]
                windows = self.stores.read([self.index[t] for t in batch], batch)
                if self.model is not None:
                    self._pending.append((batch, windows))
                self.order.extend(batch)
                yield windows.X

    def add(self, out: dict[str, np.ndarray]) -> None:
        """Pre-annotations of the batch just scored, from the model's outputs."""
        batch, windows = self._pending.pop(0)
        assert self.model is not None  # batches are pending only with a model
        self.results.extend(model_pre_annotations(self.model, out, windows, batch))


def _retire(settings: Settings, state: ProjectState, versions: dict[str | None, list[int] | None]) -> None:
    """Old rankings' predictions are deleted in the background (each run would otherwise add a head of them)."""
    cleanup.retire(state, versions)
    cleanup.CLEANER.submit(settings, state)
