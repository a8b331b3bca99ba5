"""A window project's cluster review state, in its folder ``MODEL_DIR/<project>/`` (JSON, replaced atomically)::

    review_project.json     {"review_project", "title"}: the Label Studio project of its review tasks
    review_clustering.json  the last clustering offered ({"version", "clusters", "other", "members"}): ids carry
                            over to the next one, and each member's store and peak let a retraining read its window
    reviews.json            {"reviews": [...]}: every clinician answer, oldest first (the latest decides a member)

Answers come from webhooks (several gunicorn workers may write at once): :func:`record_review` and
:func:`forget_reviews` hold the project's ``reviews`` lock while they read and rewrite the file.
"""

from __future__ import annotations

import fcntl
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from ls_backend.project_state import ProjectState, project_keys, read_json, write_json_atomic

from .answers import ClusterReview
from .clusters import Cluster, Clustering
from .members import Member

LINK_FILE = "review_project.json"
CLUSTERING_FILE = "review_clustering.json"
REVIEWS_FILE = "reviews.json"


# -- the review project ----------------------------------------------------------------------------------


def link_review_project(state: ProjectState, review_project: int, title: str) -> None:
    """Remember ``review_project`` as the project of ``state``'s review tasks."""
    write_json_atomic(state.dir / LINK_FILE, {"review_project": int(review_project), "title": title})


def review_project(state: ProjectState) -> int | None:
    """The id of the project's review project; None before :func:`link_review_project`."""
    link = read_json(state.dir / LINK_FILE) or {}
    found = link.get("review_project")
    return found if isinstance(found, int) else None


def window_project_of(model_dir: Path, review_id: object) -> str | None:
    """The window project (its key) whose review project is ``review_id``; None when it is no review project."""
    for key in project_keys(model_dir):
        if str(review_project(ProjectState(Path(model_dir), key))) == str(review_id).split(".", 1)[0]:
            return key
    return None


# -- the clustering --------------------------------------------------------------------------------------


def save_clustering(state: ProjectState, version: str, clustering: Clustering, members: Mapping[str, Member]) -> None:
    """The clustering offered as ``version``, with the location of its members and of every member offered before
    (a stored answer may name them)."""
    previous = load_clustering(state)
    known = {m: member.to_dict() for m, member in (previous[2] if previous else {}).items()}
    known |= {m: members[m].to_dict() for c in clustering.clusters for m in c.members}
    write_json_atomic(
        state.dir / CLUSTERING_FILE,
        {
            "version": version,
            "clusters": [asdict(c) for c in clustering.clusters],
            "other": list(clustering.other),
            "members": known,
        },
    )


def load_clustering(state: ProjectState) -> tuple[str, Clustering, dict[str, Member]] | None:
    """The last clustering offered (its version, clusters and members' locations); None before the first."""
    content = read_json(state.dir / CLUSTERING_FILE)
    if content is None:
        return None
    path = state.dir / CLUSTERING_FILE
    try:
        clusters = tuple(cluster_of(c) for c in content["clusters"])
        members = {m: Member.from_dict(d) for m, d in content["members"].items()}
        clustering = Clustering(clusters, tuple(content["other"]))
        return str(content["version"]), clustering, members
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a clustering written by python -m ls_backend.review ({err!r})") from None


def cluster_of(data: Mapping) -> Cluster:
    """A cluster from its JSON form (``dataclasses.asdict``)."""
    return Cluster(
        id=str(data["id"]),
        shaft=str(data["shaft"]),
        members=tuple(data["members"]),
        distances=tuple(data["distances"]),
        probabilities=tuple(data["probabilities"]),
        times_seconds=tuple(data["times_seconds"]),
        peak_contacts=dict(data["peak_contacts"]),
        spread=float(data["spread"]),
    )


# -- answers ---------------------------------------------------------------------------------------------


def load_reviews(state: ProjectState) -> list[ClusterReview]:
    """Every stored answer, oldest first."""
    return [review for _, review in _stored(state)]


def record_review(state: ProjectState, annotation_id: object, review: ClusterReview) -> int:
    """Store the answer of annotation ``annotation_id`` (an update of the same annotation replaces it and becomes the
    latest); returns the number of answers stored."""
    with _locked(state):
        kept = [(a, r) for a, r in _stored(state) if a != str(annotation_id)]
        kept.append((str(annotation_id), review))
        _write(state, kept)
        return len(kept)


def forget_reviews(state: ProjectState, annotation_ids: Collection[object]) -> int:
    """Remove the answers of deleted annotations; returns how many were removed."""
    gone = {str(a) for a in annotation_ids}
    with _locked(state):
        stored = _stored(state)
        kept = [(a, r) for a, r in stored if a not in gone]
        if len(kept) != len(stored):
            _write(state, kept)
        return len(stored) - len(kept)


def _stored(state: ProjectState) -> list[tuple[str, ClusterReview]]:
    content = read_json(state.dir / REVIEWS_FILE) or {}
    out = []
    for entry in content.get("reviews", []):
        review = ClusterReview(
            entry["cluster_id"], entry["answer"], tuple(entry["members"]), frozenset(entry.get("excluded", ()))
        )
        out.append((str(entry["annotation"]), review))
    return out


def _write(state: ProjectState, stored: list[tuple[str, ClusterReview]]) -> None:
    reviews = [
        {"annotation": a, "cluster_id": r.cluster_id, "answer": r.answer, "members": list(r.members),
         "excluded": sorted(r.excluded)}
        for a, r in stored
    ]  # fmt: skip
    write_json_atomic(state.dir / REVIEWS_FILE, {"reviews": reviews})


@contextmanager
def _locked(state: ProjectState) -> Iterator[None]:
    path = state.lock("reviews")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
