"""Clinicians' annotations from Label Studio -> training targets (soft window targets and spike regions).

Each annotation is parsed on its own: a window choice or a region label this backend does not know (a renamed
choice, a hand-edited labeling config) is ignored in that one annotation, the other clinicians' answers on the task
are kept, and each unknown name is logged once per fetch with the tasks it was met in.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.labelconfig import EPILEPTIFORM_LABELS, REGION_LABELS, REGION_NAME, WINDOW_NAME

from .model.training import CHOICE_TARGETS, soft_target

logger = logging.getLogger(__name__)

# Data Manager filter: only tasks somebody annotated (the others carry no label and are large)
ANNOTATED = {
    "filters": {
        "conjunction": "and",
        "items": [{"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}],
    }
}
WINDOW_CHOICE, REGION_LABEL = "window choice", "region label"
EXPECTED_NAMES = {WINDOW_CHOICE: sorted(CHOICE_TARGETS), REGION_LABEL: sorted(REGION_LABELS)}
SHOWN_TASK_IDS = 10  # task ids named in one unknown-name warning

# (kind, name) of an unknown name -> ids of the tasks it was met in
UnknownNames = dict[tuple[str, str], set[int]]


@dataclass
class TaskLabel:
    """Everything the training needs from one labeled task (only annotations with a usable answer count)."""

    task_id: int
    window_id: str
    store: str
    onset_seconds: float
    target: float  # soft window target in [0, 1]
    regions: list[tuple[float, float, float]] = field(default_factory=list)  # (start, end, share of annotators)
    annotators: list[Any] = field(default_factory=list)  # each answering annotation's ``completed_by``
    lead_times: list[float] = field(default_factory=list)  # each one's ``lead_time`` (seconds, 0 if unknown)
    lead_time_seconds: float = 0.0


def is_spike(targets: Any) -> np.ndarray:
    """The hard class of windows from their soft targets, wherever one is needed (validation, budget counts).

    A window is a spike when its mean target is at least 0.5: "Unsure" counts half a spike, so a window marked only
    "Unsure", or "Spike" by one clinician and "No spike" by another, counts as a spike (one worth showing).
    """
    return np.asarray(targets, float) >= 0.5


def annotation_choice(result: list[dict], unknown: set[tuple[str, str]] | None = None) -> str | None:
    """One annotation's window answer: its choice, else "Spike" when it drew an epileptiform region.

    A choice not in ``CHOICE_TARGETS`` counts as no choice; unknown names are added to ``unknown``.
    """
    return annotation_answer(result, unknown)[0]


def annotation_answer(
    result: list[dict], unknown: set[tuple[str, str]] | None = None
) -> tuple[str | None, list[tuple[float, float]]]:
    """One annotation's window answer (see :func:`annotation_choice`) and its epileptiform regions."""
    regions = annotation_regions(result, unknown)
    return _window_choice(result, unknown) or ("Spike" if regions else None), regions


def _window_choice(result: list[dict], unknown: set[tuple[str, str]] | None) -> str | None:
    for item in result:
        if item.get("from_name") == WINDOW_NAME and item.get("type") == "choices":
            choices = item.get("value", {}).get("choices") or []
            if choices and choices[0] in CHOICE_TARGETS:
                return choices[0]
            if choices and unknown is not None:
                unknown.add((WINDOW_CHOICE, str(choices[0])))
    return None


def annotation_regions(result: list[dict], unknown: set[tuple[str, str]] | None = None) -> list[tuple[float, float]]:
    """Epileptiform regions (start, end) in task seconds; region labels not in ``REGION_LABELS`` go to ``unknown``."""
    regions = []
    for item in result:
        value = item.get("value", {})
        if item.get("from_name") != REGION_NAME:
            continue
        names = set(value.get("timeserieslabels", []))
        if unknown is not None:
            unknown.update((REGION_LABEL, str(name)) for name in names - set(REGION_LABELS))
        if names & set(EPILEPTIFORM_LABELS):
            regions.append((float(value["start"]), float(value["end"])))
    return regions


def task_label(task: dict, unknown: UnknownNames | None = None) -> TaskLabel | None:
    """The label of one task from its (not cancelled) annotations that give an answer; None when none does.

    Unknown names are added to ``unknown`` with the task id (and logged at once when ``unknown`` is not given).
    """
    data = task.get("data") or {}
    if not data.get("window_id") or not data.get("store"):
        return None
    seen: set[tuple[str, str]] = set()
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    answers = [(a, *annotation_answer(a.get("result") or [], seen)) for a in annotations]
    answered = [(a, choice, regions) for a, choice, regions in answers if choice is not None]
    collected: UnknownNames = {} if unknown is None else unknown
    for name in seen:
        collected.setdefault(name, set()).add(int(task["id"]))
    if unknown is None:
        warn_unknown(collected)
    target = soft_target(choice for _, choice, _ in answered)
    if target is None:  # no answer
        return None
    share = 1.0 / len(answered)
    lead_times = [float(a.get("lead_time") or 0.0) for a, _, _ in answered]
    return TaskLabel(
        task_id=int(task["id"]),
        window_id=str(data["window_id"]),
        store=str(data["store"]),
        onset_seconds=float(data.get("onset_seconds", 0.0)),
        target=target,
        regions=[(start, end, share) for _, _, regions in answered for start, end in regions],
        annotators=[a.get("completed_by") for a, _, _ in answered],
        lead_times=lead_times,
        lead_time_seconds=sum(lead_times),
    )


def warn_unknown(unknown: UnknownNames) -> None:
    """One warning per unknown name: where it was met and the names expected."""
    for (kind, name), ids in sorted(unknown.items()):
        task_ids = sorted(ids)
        shown = ", ".join(map(str, task_ids[:SHOWN_TASK_IDS])) + (", ..." if len(task_ids) > SHOWN_TASK_IDS else "")
        logger.warning(
            "unknown %s %r in %d task(s) (task %s): ignored in those annotations, the other answers are kept; "
            "expected one of %s",
            kind, name, len(task_ids), shown, EXPECTED_NAMES[kind],
        )  # fmt: skip


def fetch_labels(client: Any, project_id: int, page_size: int = 100) -> list[TaskLabel]:
    """Labels of every annotated task of the project (all clinicians), through label-studio-sdk, page by page.

    Annotations submitted during the read shift the pages, so a task may come twice: it counts once (its last read).
    """
    labels: dict[int, TaskLabel] = {}
    unknown: UnknownNames = {}
    pages = client.tasks.list(project=project_id, fields="all", query=json.dumps(ANNOTATED), page_size=page_size)
    for task in pages:
        label = task_label(task.model_dump() if hasattr(task, "model_dump") else dict(task), unknown)
        if label is not None:
            labels[label.task_id] = label
    warn_unknown(unknown)
    return list(labels.values())
