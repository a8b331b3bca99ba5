"""Clinicians' annotations from Label Studio -> training targets (soft window targets and spike regions).

A task shows its window on a page with context around it. The window's own answers decide its label; a spike
region drawn in the context also labels the other tasks' windows it overlaps (:func:`context_labels`), unless those
windows were answered on their own tasks: one drawn spike can label several windows without asking again.

Each annotation is parsed on its own: a window choice or a region label this backend does not know (a renamed
choice, a hand-edited labeling config) is ignored in that one annotation, the other clinicians' answers on the task
are kept, and each unknown name is logged once per fetch with the tasks it was met in.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.labelconfig import EPILEPTIFORM_LABELS, REGION_LABELS, REGION_NAME, WINDOW_NAME

from .model.training import CHOICE_TARGETS, soft_target
from .project_state import ProjectState
from .stores import StoreCache, WindowRef
from .task_index import TaskWindow, TaskWindows, cached_task_index

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
Span = tuple[float, float]  # (start, end) in recording seconds


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
    context_of: list[int] = field(default_factory=list)  # labeled from these tasks' context: no answer of its own

    @property
    def from_context(self) -> bool:
        """Labeled by spike regions drawn on other tasks' pages; no clinician answered it (it spent no label)."""
        return bool(self.context_of)


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
    result: list[dict], unknown: set[tuple[str, str]] | None = None, window: Span | None = None
) -> tuple[str | None, list[Span]]:
    """One annotation's window answer (see :func:`annotation_choice`) and its epileptiform regions in ``window``.

    With ``window`` (the task's window in recording seconds) only the regions overlapping it answer "Spike" and are
    returned: the others were drawn in the context and label other windows (:func:`context_labels`).
    """
    regions = [span for span in annotation_regions(result, unknown) if window is None or _overlap(span, window)]
    return _window_choice(result, unknown) or ("Spike" if regions else None), regions


def _overlap(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


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
    answers = [(a, *annotation_answer(a.get("result") or [], seen, task_window(data))) for a in _submitted(task)]
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


def task_window(data: Mapping) -> Span | None:
    """The span of a task's window in recording seconds (None for a task without ``duration_seconds``)."""
    if not data.get("duration_seconds"):
        return None
    onset = float(data.get("onset_seconds", 0.0))
    return onset, onset + float(data["duration_seconds"])


def drawn_regions(task: dict) -> list[Span]:
    """Every epileptiform region drawn on a task's page (window and context) by its submitted annotations."""
    return sorted({span for a in _submitted(task) for span in annotation_regions(a.get("result") or [])})


def _submitted(task: dict) -> list[dict]:
    return [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]


def context_labels(
    answered: Mapping[int, TaskLabel], drawn: Mapping[int, tuple[str, list[Span]]], windows: TaskWindows
) -> list[TaskLabel]:
    """Labels of the task windows that spike regions drawn on other tasks' pages overlap (``drawn``: task id ->
    its store key and :func:`drawn_regions`): each a spike window with those regions, by task id.

    A window answered on its own task (``answered``) keeps its own answer, and a task's own window is decided by its
    own answers. The regions count fully (target 1): a clinician who drew nothing there did not judge that window.
    """
    regions: dict[int, set[Span]] = defaultdict(set)
    sources: dict[int, set[int]] = defaultdict(set)
    found: dict[int, TaskWindow] = {}
    for source, (store, spans) in drawn.items():
        for span in spans:
            for window in windows.overlapping(store, *span):
                if window.task_id != source and window.task_id not in answered:
                    found[window.task_id] = window
                    regions[window.task_id].add(span)
                    sources[window.task_id].add(source)
    return [
        TaskLabel(
            task_id=task_id,
            window_id=window.window_id,
            store=window.store,
            onset_seconds=window.onset_seconds,
            target=1.0,
            regions=[(start, end, 1.0) for start, end in sorted(regions[task_id])],
            context_of=sorted(sources[task_id]),
        )
        for task_id, window in sorted(found.items())
    ]


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


def fetch_labels(
    client: Any, project_id: int, windows: TaskWindows | None = None, page_size: int = 100
) -> list[TaskLabel]:
    """Labels of every annotated task of the project (all clinicians), through label-studio-sdk, page by page; with
    the project's task ``windows``, then the windows labeled from context (:func:`context_labels`).

    Annotations submitted during the read shift the pages, so a task may come twice: it counts once (its last read).
    """
    labels: dict[int, TaskLabel] = {}
    drawn: dict[int, tuple[str, list[Span]]] = {}
    unknown: UnknownNames = {}
    pages = client.tasks.list(project=project_id, fields="all", query=json.dumps(ANNOTATED), page_size=page_size)
    for page_task in pages:
        task = page_task.model_dump() if hasattr(page_task, "model_dump") else dict(page_task)
        label = task_label(task, unknown)
        if label is not None:
            labels[label.task_id] = label
        spans = drawn_regions(task)
        if spans and (task.get("data") or {}).get("store"):
            drawn[int(task["id"])] = (str(task["data"]["store"]), spans)
    warn_unknown(unknown)
    from_context = [] if windows is None else context_labels(labels, drawn, windows)
    if from_context:
        logger.info("project %s: %d window(s) labeled from context", project_id, len(from_context))
    return list(labels.values()) + from_context


def project_labels(
    client: Any, state: ProjectState, window_store_dir: Path, index: Mapping[int, WindowRef] | None = None
) -> list[TaskLabel]:
    """Every label of a project, the windows labeled from context included: what the retraining, the budget and the
    detection read. ``index``: the project's task index when the caller has it (else read from its cache)."""
    index = cached_task_index(client, state) if index is None else index
    return fetch_labels(client, int(state.key), TaskWindows(index, StoreCache(window_store_dir)))
