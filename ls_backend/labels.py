"""Clinicians' annotations from Label Studio -> training targets (soft window targets and spike regions)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from converters.labelconfig import EPILEPTIFORM_LABELS, REGION_NAME, WINDOW_NAME

from .model.training import soft_target

logger = logging.getLogger(__name__)

# Data Manager filter: only tasks somebody annotated (the others carry no label and are large)
ANNOTATED = {
    "filters": {
        "conjunction": "and",
        "items": [{"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}],
    }
}


@dataclass
class TaskLabel:
    """Everything the training needs from one labeled task."""

    task_id: int
    window_id: str
    store: str
    onset_seconds: float
    target: float  # soft window target in [0, 1]
    regions: list[tuple[float, float, float]] = field(default_factory=list)  # (start, end, share of annotators)
    annotators: list[Any] = field(default_factory=list)  # each annotation's ``completed_by``
    lead_times: list[float] = field(default_factory=list)  # each annotation's ``lead_time`` (seconds, 0 if unknown)
    lead_time_seconds: float = 0.0


def annotation_choice(result: list[dict]) -> str | None:
    """One annotation's window answer: its choice, else "Spike" when it drew an epileptiform region."""
    for item in result:
        if item.get("from_name") == WINDOW_NAME and item.get("type") == "choices":
            choices = item.get("value", {}).get("choices") or []
            if choices:
                return choices[0]
    return "Spike" if annotation_regions(result) else None


def annotation_regions(result: list[dict]) -> list[tuple[float, float]]:
    """Epileptiform regions (start, end) in task seconds."""
    regions = []
    for item in result:
        value = item.get("value", {})
        if item.get("from_name") == REGION_NAME and set(value.get("timeserieslabels", [])) & set(EPILEPTIFORM_LABELS):
            regions.append((float(value["start"]), float(value["end"])))
    return regions


def task_label(task: dict) -> TaskLabel | None:
    """The label of one task from all its (not cancelled) annotations; None when nobody gave an answer."""
    data = task.get("data") or {}
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    choices = [annotation_choice(a.get("result") or []) for a in annotations]
    try:
        target = soft_target(choices)
    except ValueError as err:
        logger.warning("task %s: %s; skipped", task.get("id"), err)
        return None
    if target is None or not data.get("window_id") or not data.get("store"):
        return None
    drawn = [r for a in annotations for r in annotation_regions(a.get("result") or [])]
    share = 1.0 / max(1, len(annotations))
    lead_times = [float(a.get("lead_time") or 0.0) for a in annotations]
    return TaskLabel(
        task_id=int(task["id"]),
        window_id=str(data["window_id"]),
        store=str(data["store"]),
        onset_seconds=float(data.get("onset_seconds", 0.0)),
        target=target,
        regions=[(start, end, share) for start, end in drawn],
        annotators=[a.get("completed_by") for a in annotations],
        lead_times=lead_times,
        lead_time_seconds=sum(lead_times),
    )


def fetch_labels(client: Any, project_id: int, page_size: int = 100) -> list[TaskLabel]:
    """Labels of every annotated task of the project (all clinicians), through label-studio-sdk."""
    labels = []
    pages = client.tasks.list(project=project_id, fields="all", query=json.dumps(ANNOTATED), page_size=page_size)
    for task in pages:
        label = task_label(task.model_dump() if hasattr(task, "model_dump") else dict(task))
        if label is not None:
            labels.append(label)
    return labels
