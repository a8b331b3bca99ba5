"""Review tasks: one Label Studio task per cluster, its labeling config, and the scores that order them.

A task's data holds what the answer needs to become a :class:`~ls_backend.review.answers.ClusterReview` when its
webhook arrives (:mod:`ls_backend.review.feedback`): the cluster's id, all its members at the time, the shown
members by their exclusion choice, and the window project it reviews. Its prediction carries the task's ``score``
(low: review first, from :func:`~ls_backend.review.clusters.review_order`) under the project's ``model_version``,
so Label Studio's uncertainty sampling serves the large and uncertain clusters first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from xml.sax.saxutils import quoteattr

from .answers import ACCEPTED, ANSWERS, MIXED, REJECTED
from .clusters import Cluster, Clustering, review_order
from .members import Member
from .render import cluster_png, data_uri, shown_label, shown_slots

ANSWER_NAME = "answer"  # the config's <Choices> of the answer
EXCLUDED_NAME = "excluded"  # the config's <Choices> of the shown members to treat individually
IMAGE_NAME = "image"
#: One key per answer; none is a key of Label Studio's own editor (it uses ctrl/alt/shift combinations, arrows,
#: backspace and escape); "n" answers "No spike" in the window project too.
ANSWER_HOTKEYS = {ACCEPTED: "a", MIXED: "m", REJECTED: "n"}
VERSION_PREFIX = "review-"


def review_label_config() -> str:
    """The review project's labeling config: the picture, the summary, the answer (hotkeys), and the exclusion of
    shown members (choices from the task's ``shown``)."""
    answers = "\n".join(f"    <Choice value={quoteattr(a)} hotkey={quoteattr(ANSWER_HOTKEYS[a])}/>" for a in ANSWERS)
    return f"""<View>
  <Header value="$title"/>
  <Choices name="{ANSWER_NAME}" toName="{IMAGE_NAME}" choice="single-radio" required="true" showInline="true">
{answers}
  </Choices>
  <Header value="Shown members to treat individually (left out of the answer):" size="6"/>
  <Choices name="{EXCLUDED_NAME}" toName="{IMAGE_NAME}" choice="multiple" value="$shown" showInline="true"/>
  <Text name="summary" value="$summary"/>
  <Image name="{IMAGE_NAME}" value="$image" zoom="true" zoomControl="true"/>
</View>
"""


def clustering_version(clustering: Clustering, decided: Collection[str]) -> str:
    """The review ranking's ``model_version``: ``review-`` and a hash of the offered clusters and decided members."""
    text = "\n".join(f"{c.id}:{','.join(c.members)}" for c in clustering.clusters) + "\n" + ",".join(sorted(decided))
    return VERSION_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:10]


def review_tasks(
    clustering: Clustering,
    members: Mapping[str, Member],
    decided: Collection[str],
    window_project: str,
    version: str,
    gain_uv: float,
) -> list[dict]:
    """One task per cluster with undecided members, in review order (scores from 0, review first, to below 1)."""
    order = review_order(clustering, decided)
    return [
        review_task(cluster, members, window_project, version, k / len(order), gain_uv)
        for k, cluster in enumerate(order)
    ]


def review_task(
    cluster: Cluster,
    members: Mapping[str, Member],
    window_project: str,
    version: str,
    score: float,
    gain_uv: float,
) -> dict:
    """The task of one cluster (see the module docstring)."""
    shown = {shown_label(slot, members[m]): m for slot, m in shown_slots(cluster)}
    data = {
        "title": f"Cluster {cluster.id}: {cluster.size} detections peaking on shaft {cluster.shaft}",
        "summary": summary_text(cluster, members),
        "image": data_uri(cluster_png(cluster, members, gain_uv)),
        "shown": [{"value": label} for label in shown],
        "shown_members": shown,
        "cluster_id": cluster.id,
        "members": list(cluster.members),
        "window_project": str(window_project),
        "size": cluster.size,
        "shaft": cluster.shaft,
    }
    prediction = {"model_version": version, "score": float(score), "result": []}
    return {"data": data, "meta": {"cluster_id": cluster.id}, "predictions": [prediction]}


def summary_text(cluster: Cluster, members: Mapping[str, Member]) -> str:
    """The task's text: size, shaft, peak contacts (counts), recordings, and what each answer does."""
    contacts = ", ".join(f"{name} ({count})" for name, count in cluster.peak_contacts.items())
    recordings: dict[str, int] = {}
    for member in cluster.members:
        recordings[members[member].recording] = recordings.get(members[member].recording, 0) + 1
    where = ", ".join(f"{name} ({count})" for name, count in sorted(recordings.items()))
    return (
        f"{cluster.size} detections on shaft {cluster.shaft}. Peak contacts: {contacts}. Recordings: {where}. "
        f"Shown: R1-R3 closest to the cluster's centre, A1-A3 the most atypical. "
        f"'{ACCEPTED}' labels every member a spike, '{REJECTED}' labels them all not spikes, '{MIXED}' labels none "
        "(they come back one by one); an excluded member is left out of the answer."
    )


def shown_members(data: Mapping) -> dict[str, str]:
    """The task's exclusion choices -> member ids."""
    shown = data.get("shown_members")
    return dict(shown) if isinstance(shown, Mapping) else {}
