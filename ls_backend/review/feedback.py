"""A review answer flows back: the webhook of a review project's annotation -> a stored :class:`ClusterReview` ->
the window project's retraining.

Label Studio sends ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` with the annotation and its task (whose data holds
the cluster and its members, :mod:`ls_backend.review.tasks`), and ``ANNOTATIONS_DELETED`` with the deleted
annotations. The review project is mapped to its window project by the link ``python -m ls_backend.review`` stored
(:func:`ls_backend.review.store.window_project_of`), not by anything in the request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from ls_backend.project_state import ProjectState

from .answers import ANSWERS, ClusterReview
from .store import forget_reviews, record_review, window_project_of
from .tasks import ANSWER_NAME, EXCLUDED_NAME, shown_members

logger = logging.getLogger(__name__)

ANSWER_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}
DELETE_ACTION = "ANNOTATIONS_DELETED"


def review_of_annotation(task: Mapping, annotation: Mapping) -> ClusterReview:
    """The clinician's decision in ``annotation`` of review ``task``; ValueError naming the task for an answer or
    exclusion the task does not offer, or a task that is no review task."""
    task_id = task.get("id")
    data = task.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("cluster_id"), str):
        raise ValueError(f"review task {task_id}: no data.cluster_id (not a task of python -m ls_backend.review)")
    members = data.get("members")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ValueError(f"review task {task_id}: data.members must be the list of the cluster's member ids")
    chosen = {name: _choices(item) for item in annotation.get("result") or [] if (name := item.get("from_name"))}
    answers = chosen.get(ANSWER_NAME) or []
    if len(answers) != 1 or answers[0] not in ANSWERS:
        raise ValueError(f"review task {task_id}: expected one answer of {ANSWERS}, got {answers}")
    shown = shown_members(data)
    unknown = [name for name in chosen.get(EXCLUDED_NAME, []) if name not in shown]
    if unknown:
        raise ValueError(f"review task {task_id}: excluded {unknown} are not among its shown members {list(shown)}")
    excluded = frozenset(shown[name] for name in chosen.get(EXCLUDED_NAME, []))
    return ClusterReview(data["cluster_id"], answers[0], tuple(members), excluded)


def _choices(item: Mapping) -> list[str]:
    value = item.get("value")
    choices = value.get("choices") if isinstance(value, Mapping) else None
    return [str(c) for c in choices] if isinstance(choices, list) else []


def handle_review_webhook(model_dir: Path, body: Mapping) -> str | None:
    """Store what a review project's webhook says and return the window project to retrain (None: nothing to
    retrain); raise LookupError when ``body`` is no review project's (the caller handles it as a window project's)."""
    project = body.get("project")
    review_id = project.get("id") if isinstance(project, Mapping) else None
    window = window_project_of(model_dir, review_id) if review_id is not None else None
    if window is None:
        raise LookupError(f"project {review_id} is not a review project")
    state = ProjectState(Path(model_dir), window)
    action = body.get("action")
    if action in ANSWER_ACTIONS:
        annotation, task = body.get("annotation"), body.get("task")
        if not isinstance(annotation, Mapping) or not isinstance(task, Mapping):
            raise ValueError(f"{action} of review project {review_id}: the webhook must send the annotation and task")
        review = review_of_annotation(task, annotation)
        stored = record_review(state, annotation.get("id"), review)
        logger.info(
            "project %s: cluster %s reviewed %r (%d members, %d excluded); %d answers stored",
            window, review.cluster_id, review.answer, len(review.members), len(review.excluded), stored,
        )  # fmt: skip
        return window
    if action == DELETE_ACTION:
        deleted = [a.get("id") for a in body.get("annotations") or [] if isinstance(a, Mapping)]
        return window if forget_reviews(state, deleted) else None
    return None
