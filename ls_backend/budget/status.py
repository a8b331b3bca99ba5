"""What a project's labels cost and bought: counted from Label Studio's annotations and the model history.

A *label* is one clinician's submitted (not cancelled) answer on one window, so two clinicians answering the same
window spend two labels. The labels counted are the ones the training uses (:func:`ls_backend.labels.task_label`:
an annotation whose only answer is an unknown choice is none). Windows labeled by a spike region drawn in another
task's context (:func:`ls_backend.labels.context_labels`) are windows labeled, reported apart as *labels from
context*, and spend nothing: the clinician's decision was counted once, as the answer on the task it was drawn in.
A window is a spike window by the validation's
rule (:func:`ls_backend.labels.is_spike`: "Unsure" counts half a spike). Time is Label Studio's ``lead_time`` of each
annotation. Quality is the held-back validation AUPRC that each promoted model version recorded in the registry
(versions trained on fewer than ``MIN_VALIDATION`` labels have none and are left out of the curve).

The status is computed after every retraining and kept as ``MODEL_DIR/<project>/budget_status.json``, which the
``/report`` page reads (so a page view never asks Label Studio for every annotation).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..labels import TaskLabel, is_spike, project_labels
from ..project_state import SPENT_SUFFIX, project_key, write_json_atomic
from ..registry import ModelRegistry
from ..review.exports import review_states
from ..review.store import load_reviews
from .plan import Budget, load_budget

logger = logging.getLogger(__name__)

STATUS_FILE = "budget_status.json"
SPENT_FLAG = "budget_spent.json"


@dataclass
class ClinicianUse:
    name: str
    labels: int
    seconds: float
    budget: int | None = None


@dataclass
class BudgetStatus:
    """A snapshot of one project's spending; ``quality`` holds ``{labels, score, version, n_validation, method}``."""

    project: str
    title: str
    budget: int | None
    target_score: float
    spent: int
    labeled_windows: int
    spike_windows: int
    no_spike_windows: int
    seconds: float
    clinicians: list[ClinicianUse] = field(default_factory=list)
    quality: list[dict] = field(default_factory=list)
    version: str | None = None
    made_at: float = field(default_factory=time.time)
    context_windows: int = 0  # of the labeled windows, those labeled from context (no label spent on them)
    cluster_reviews: int = 0  # cluster review decisions (ls_backend.review), not counted in ``spent``
    review_labeled_windows: int = 0  # detections those decisions labeled (no clinician window label on them)

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else max(0, self.budget - self.spent)

    @property
    def is_spent(self) -> bool:
        return self.budget is not None and self.spent >= self.budget

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BudgetStatus:
        data = dict(data)
        data["clinicians"] = [ClinicianUse(**c) for c in data.get("clinicians", [])]
        return cls(**data)


def clinician_name(completed_by: Any, names: dict[int, str]) -> str:
    """An annotation's author as an email: ``completed_by`` is a user id, or the user itself when expanded."""
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or completed_by.get("id"))
    try:
        return names.get(int(completed_by), f"user {completed_by}")
    except (TypeError, ValueError):
        return "unknown"


def compute_status(
    project: str,
    title: str,
    budget: Budget,
    labels: list[TaskLabel],
    history: list[dict],
    names: dict[int, str],
    reviews: tuple[int, int] = (0, 0),
) -> BudgetStatus:
    """The spending of ``labels`` (from :func:`ls_backend.labels.fetch_labels`) and the quality it bought;
    ``reviews``: the cluster review decisions and the detections they labeled, reported apart."""
    per_clinician: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for label in labels:
        times = label.lead_times or [0.0] * len(label.annotators)
        for who, seconds in zip(label.annotators, times):
            use = per_clinician[clinician_name(who, names)]
            use[0] += 1
            use[1] += seconds
    clinicians = [
        ClinicianUse(name, int(n), round(s, 1), budget.clinicians.get(name))
        for name, (n, s) in sorted(per_clinician.items())
    ]
    clinicians += [ClinicianUse(name, 0, 0.0, limit) for name, limit in sorted(budget.clinicians.items())
                   if name not in per_clinician]  # fmt: skip
    spikes = int(is_spike([label.target for label in labels]).sum())
    return BudgetStatus(
        project=project_key(project),
        title=title,
        budget=budget.labels,
        target_score=budget.target_score,
        spent=sum(c.labels for c in clinicians),
        labeled_windows=len(labels),
        spike_windows=spikes,
        no_spike_windows=len(labels) - spikes,
        seconds=round(sum(c.seconds for c in clinicians), 1),
        clinicians=clinicians,
        quality=quality_points(history),
        version=history[-1]["version"] if history else None,
        context_windows=sum(label.from_context for label in labels),
        cluster_reviews=reviews[0],
        review_labeled_windows=reviews[1],
    )


def quality_points(history: list[dict]) -> list[dict]:
    """(labels used, AUPRC) of each promoted version: on held-back labels, or cross-validated while labels were few."""
    points = []
    for meta in history:
        metrics = meta.get("metrics") or {}
        if not meta.get("labels_used"):
            continue
        if metrics.get("n_validation") and "candidate_auprc" in metrics:
            score, n_scored, method = metrics["candidate_auprc"], metrics["n_validation"], "held back"
        elif "cv_auprc" in metrics:
            score, n_scored, method = metrics["cv_auprc"], meta["labels_used"], "cross-validated"
        else:
            continue
        points.append(
            {
                "labels": int(meta["labels_used"]),
                "score": float(score),
                "version": meta.get("version"),
                "n_validation": int(n_scored),
                "method": method,
            }
        )
    return points


def collect_status(
    settings: Settings, client: Any, project: object, labels: list[TaskLabel] | None = None
) -> BudgetStatus:
    """Read the project's annotations (unless given), users and model history, and compute its status."""
    key = project_key(project)
    title = client.projects.get(id=int(key)).title  # an unknown project fails here, before the long reads
    registry = ModelRegistry(settings.model_dir)
    labels = project_labels(client, registry.state(key), settings.window_store_dir) if labels is None else labels
    names = {int(u.id): str(u.email or u.username) for u in client.users.list()}
    history = registry.history(key)
    state = registry.state(key)
    reviews = (len(load_reviews(state)), len(review_states(state, labels, settings.window_store_dir)))
    return compute_status(key, title, load_budget(settings, key), labels, history, names, reviews)


def save_status(model_dir: Path, status: BudgetStatus) -> None:
    write_json_atomic(Path(model_dir) / status.project / STATUS_FILE, status.to_dict())


def load_status(model_dir: Path, project: object) -> BudgetStatus | None:
    """The last saved status, or None before the first one."""
    try:
        return BudgetStatus.from_dict(json.loads((Path(model_dir) / project_key(project) / STATUS_FILE).read_text()))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, TypeError) as err:
        logger.warning("project %s: unreadable %s (%s): ignored", project, STATUS_FILE, err)
        return None


# -- the budget-spent mark on the ranking -----------------------------------------------------------------


def ranking_version(settings: Settings, project: object, version: str, labels: list[TaskLabel]) -> str:
    """The model version to push the ranking under: ``<version>-budget-spent`` once the budget is spent.

    Also records the decision (``budget_spent.json``) so that /setup and /predict answer the same version.
    """
    try:
        budget = load_budget(settings, project)
    except ValueError as err:  # a hand-edited budget file must not stop the retraining
        logger.error("project %s: %s; the budget is ignored until it is set again", project, err)
        return version
    spent = sum(len(label.annotators) for label in labels)
    flag = Path(settings.model_dir) / project_key(project) / SPENT_FLAG
    if budget.labels is None or spent < budget.labels:
        flag.unlink(missing_ok=True)
        return version
    write_json_atomic(flag, {"budget": budget.labels, "spent": spent, "at": time.time()})
    logger.info(
        "project %s: label budget spent (%d of %d): ranking marked %s", project, spent, budget.labels, SPENT_SUFFIX
    )
    return version + SPENT_SUFFIX


def marked_version(project_dir: Path, version: str) -> str:
    """``version`` as the last ranking was pushed: with the budget-spent mark when the budget is spent."""
    return version + SPENT_SUFFIX if (project_dir / SPENT_FLAG).exists() else version
