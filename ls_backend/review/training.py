"""The stored review answers joined to a retraining's training set (:func:`ls_backend.retrain.training_set`).

Each labeled member is read as a window centred on its peak (:func:`ls_backend.review.members.member_windows`),
as long as the clinicians' windows, weighted ``REVIEW_WEIGHT``; members that lie in a window a clinician labeled get
no review label (the clinician's label wins), and members whose location is unknown or whose store cannot be read
are left out (logged).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ls_backend.labels import TaskLabel
from ls_backend.loop import Labeled
from ls_backend.project_state import ProjectState

from .answers import ReviewLabels, review_labels, with_reviews
from .members import clinician_labeled, member_windows
from .store import load_clustering, load_reviews

logger = logging.getLogger(__name__)


def with_cluster_reviews(
    state: ProjectState, labels: list[TaskLabel], labeled: Labeled, window_store_dir: Path
) -> tuple[Labeled, int]:
    """``labeled`` (the clinicians' windows) with the project's review labels; and how many review labels joined."""
    reviews = load_reviews(state)
    loaded = load_clustering(state) if reviews else None
    if not reviews or loaded is None:
        return labeled, 0
    members = loaded[2]
    reviewed = {m for review in reviews for m in review.members if m in members}
    decided = review_labels(reviews, clinician_labeled([members[m] for m in reviewed], labels, window_store_dir))
    found = subset(decided, [m for m in decided.ids if m in members])
    if len(found) < len(decided):
        logger.warning("project %s: %d reviewed members have no known location: left out", state.key,
                       len(decided) - len(found))  # fmt: skip
    if not len(found):
        return labeled, 0
    try:
        X = member_windows([members[m] for m in found.ids], labeled.X.shape[2])
    except (OSError, ValueError) as err:
        logger.warning("project %s: review labels left out of this training: %s", state.key, err)
        return labeled, 0
    if X.shape[1:] != labeled.X.shape[1:]:
        logger.warning("project %s: reviewed windows %s differ from the labeled windows %s: left out", state.key,
                       X.shape[1:], labeled.X.shape[1:])  # fmt: skip
        return labeled, 0
    logger.info("project %s: %d review labels join %d window labels", state.key, len(found), len(labeled))
    return with_reviews(labeled, X, found), len(found)


def subset(labels: ReviewLabels, ids: list[str]) -> ReviewLabels:
    """The review labels of ``ids`` only (in their order)."""
    row = {m: k for k, m in enumerate(labels.ids)}
    rows = [row[m] for m in ids]
    return ReviewLabels(
        ids=tuple(ids),
        targets=labels.targets[rows],
        weights=labels.weights[rows],
        states={m: labels.states[m] for m in ids},
        returned=labels.returned,
    )
