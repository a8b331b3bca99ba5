"""Review decisions applied to a new detection run's events (``python -m ls_backend.detect --project N``).

A member is named by its recording and peak (:func:`~ls_backend.review.clusters.event_id`). A detection by the same
model finds the same peaks; a retrained model may move a peak by a few samples, so an event takes the decision of the
reviewed member of its recording whose peak is nearest, within ``MATCH_SECONDS``.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Collection, Sequence
from pathlib import Path

from ls_backend.detect.events import Event
from ls_backend.labels import TaskLabel
from ls_backend.project_state import ProjectState

from .answers import review_labels
from .clusters import event_id
from .members import clinician_labeled
from .store import load_clustering, load_reviews

MATCH_SECONDS = 0.05  # an event and a reviewed member this close (same recording) are the same spike


def review_states(state: ProjectState, labels: Sequence[TaskLabel], window_store_dir: Path) -> dict[str, str]:
    """Member id -> "accepted" / "rejected" of the project's stored answers (members in a window a clinician
    labeled get none: the window label decides them)."""
    reviews = load_reviews(state)
    loaded = load_clustering(state) if reviews else None
    if loaded is None:
        return {}
    members = loaded[2]
    reviewed = [members[m] for review in reviews for m in review.members if m in members]
    return review_labels(reviews, clinician_labeled(reviewed, labels, window_store_dir)).states


def matched_ids(recording: str, events: Sequence[Event], member_ids: Collection[str]) -> list[str]:
    """Each event's member id: the reviewed member of ``recording`` nearest its peak within ``MATCH_SECONDS``,
    else its own :func:`event_id`."""
    peaks: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for member in member_ids:
        name, _, ms = member.rpartition("@")
        if ms.isdigit():
            peaks[name].append((int(ms) / 1000, member))
    own = sorted(peaks.get(recording, []))
    times = [t for t, _ in own]
    out = []
    for event in events:
        at = bisect.bisect_left(times, event.peak)
        near = [own[k] for k in (at - 1, at) if 0 <= k < len(own)]
        best = min(near, key=lambda tm: abs(tm[0] - event.peak), default=None)
        close = best is not None and abs(best[0] - event.peak) <= MATCH_SECONDS
        out.append(best[1] if close and best is not None else event_id(recording, event))
    return out
