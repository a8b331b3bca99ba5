"""``python -m ls_backend.review``: a patient's detections grouped into clusters, one review task per cluster in the
patient's cluster review project in Label Studio.

Reads the window project's latest detection output (or ``--detection``) and its serving model (or ``--model``),
clusters the detections no clinician decided yet (cluster ids carry over from the previous run), and publishes one
task per cluster with undecided members into the project ``"<patient project title> - cluster review"`` (created on
the first run, with a webhook to the backend that serves the window project). Answered tasks stay; the unanswered
tasks of the previous run are replaced. Bad input ends with one line on stderr and exit code 2, before anything is
written.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from label_studio_sdk.core.api_error import ApiError

from converters import studio
from converters.tasks import patient_gain_uv
from converters.windows import WindowStore

from ..cli import OneLineParser, configure_logging
from ..config import Settings
from ..detect.command import UsageError, checkpoint_model, project_model, project_state
from ..detect.exports import is_detection_output, latest_detection
from ..detect.queue import load_model
from ..model.estimator import SpikeDetector
from ..project_state import ProjectState
from .answers import member_decisions
from .clusters import Cluster, Clustering, Detections, background_embeddings, cluster_detections, event_detections
from .members import Member, RecordingDetections, members_of, read_detection, unreviewed
from .store import link_review_project, load_clustering, load_reviews, review_project, save_clustering
from .tasks import clustering_version, review_label_config, review_tasks

logger = logging.getLogger(__name__)

PROG = "python -m ls_backend.review"
TITLE_SUFFIX = " - cluster review"
BACKGROUND_WINDOWS = 500  # ordinary windows (over all recordings) the embeddings are standardised with
WEBHOOK_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"]

EXAMPLES = """
examples:
  # the latest detection of project 3 (python -m ls_backend.detect ... --project 3), its serving model
  export MODEL_DIR=models LABEL_STUDIO_URL=http://localhost:8080 LABEL_STUDIO_API_KEY=<your token>
  python -m ls_backend.review --project 3

  # another detection output, another checkpoint
  python -m ls_backend.review --project 3 --detection P01_detections --model models/3/checkpoints/p3-v0004.pt
"""


@dataclass
class Plan:
    """A checked review run: everything :func:`publish_review` needs."""

    state: ProjectState
    detection: Path
    model: SpikeDetector
    client: Any
    window_title: str
    backend_url: str | None  # the window project's ML backend: where the review project's webhook goes
    webhook_secret: str


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Group a patient's detected spikes into clusters (spatial focus and waveform) and publish one "
        "review task per cluster in the patient's cluster review project in Label Studio; each answer labels the "
        "cluster's members for the next retraining. Settings from the environment like the backend's: MODEL_DIR, "
        "LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY, WEBHOOK_SECRET.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--project", required=True, help="the patient's Label Studio (window) project id, e.g. 3")
    parser.add_argument(
        "--detection",
        type=Path,
        help="a detection output folder (python -m ls_backend.detect); default: the project's latest",
    )
    parser.add_argument(
        "--model", help="a model checkpoint (.pt) whose embedding groups the detections; default: the project's"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log messages (-vv: debug)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        plan = plan_review(Settings.from_env(), args.project, args.detection, args.model)
    except ValueError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    try:
        review_id, n_tasks, n_clusters = publish_review(plan)
    except studio.StudioError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    logger.info("%s", shlex.join(argv))
    print(f"{n_tasks} cluster(s) to review of {n_clusters} in project {review_id} ({plan.window_title}{TITLE_SUFFIX})")
    return 0


def plan_review(settings: Settings, project: str, detection: Path | None = None, checkpoint: str | None = None) -> Plan:
    """Check every input (raising a ValueError naming it) and connect to Label Studio."""
    state = project_state(settings, project)
    assert state is not None
    detection = detection if detection is not None else latest_detection(state)
    if detection is None:
        raise UsageError(
            f"project {state.key} has no detection yet: run python -m ls_backend.detect <stores> --project "
            f"{state.key} first, or give --detection"
        )
    if not is_detection_output(detection):
        raise UsageError(f"--detection {detection}: not a detection output (no detection.json)")
    spec = checkpoint_model(Path(checkpoint)) if checkpoint else project_model(settings, state)
    assert spec.checkpoint is not None
    model = load_model(spec.checkpoint)[0]
    missing = [rec.store for rec in read_detection(detection) if not Path(rec.store).is_file()]
    if missing:
        raise UsageError(f"{detection}: the window stores of its recordings are gone: {', '.join(missing[:3])}")
    try:
        client = studio.connect(settings.label_studio_url, settings.label_studio_api_key)
        window_title, backend_url = window_project(client, int(state.key))
    except studio.StudioError as err:
        raise UsageError(f"{err}; check LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY") from None
    return Plan(state, Path(detection), model, client, window_title, backend_url, settings.webhook_secret)


def window_project(client: Any, project_id: int) -> tuple[str, str | None]:
    """The window project's title and the URL of its ML backend (None when none is connected)."""
    try:
        project = client.projects.get(project_id)
        backends = list(client.ml.list(project=project_id))
    except ApiError as err:
        raise studio.StudioError(f"Label Studio: project {project_id} cannot be read (HTTP {err.status_code})") from err
    url = next((b.url.rstrip("/") for b in backends if b.url), None)
    return str(project.title or f"Project {project_id}"), url


# -- clustering --------------------------------------------------------------------------------------------


def cluster_patient(
    recordings: list[RecordingDetections], model: SpikeDetector, previous: Clustering | None
) -> tuple[Clustering, dict[str, Member], float]:
    """The clustering of the recordings' undecided events, their members, and the patient's amplitude scale."""
    parts, background, stores = [], [], []
    members: dict[str, Member] = {}
    per_recording = max(2, BACKGROUND_WINDOWS // max(1, len(recordings)))
    with ExitStack() as stack:
        for rec in recordings:
            events = unreviewed(rec.events)
            store = stack.enter_context(WindowStore(rec.store))
            stores.append(store)
            parts.append(event_detections(store, events, model, rec.stem))
            background.append(background_embeddings(store, model, per_recording))
            members |= members_of(rec, events)
        gain_uv = patient_gain_uv(stores)
    clustering = cluster_detections(
        joined(parts),
        previous=previous.membership() if previous else None,
        background=np.concatenate(background),
    )
    return clustering, members, gain_uv


def joined(parts: list[Detections]) -> Detections:
    """The detections of several recordings as one."""
    return Detections(
        ids=tuple(i for p in parts for i in p.ids),
        embedding=np.concatenate([p.embedding for p in parts]),
        probability=np.concatenate([p.probability for p in parts]),
        peak_channel=tuple(c for p in parts for c in p.peak_channel),
        shaft=tuple(s for p in parts for s in p.shaft),
        time_seconds=np.concatenate([p.time_seconds for p in parts]),
    )


def undecided_part(clustering: Clustering, decided: set[str], members: dict[str, Member]) -> Clustering:
    """Each cluster with only its undecided members (a cluster is offered again for those alone)."""
    return replace(clustering, clusters=tuple(open_members(c, decided, members) for c in clustering.clusters))


def open_members(cluster: Cluster, decided: set[str], members: dict[str, Member]) -> Cluster:
    """``cluster`` without its ``decided`` members (closest to the centre still first)."""
    keep = [k for k, m in enumerate(cluster.members) if m not in decided]
    if len(keep) == cluster.size:
        return cluster
    contacts = Counter(members[cluster.members[k]].channel for k in keep)
    return replace(
        cluster,
        members=tuple(cluster.members[k] for k in keep),
        distances=tuple(cluster.distances[k] for k in keep),
        probabilities=tuple(cluster.probabilities[k] for k in keep),
        times_seconds=tuple(cluster.times_seconds[k] for k in keep),
        peak_contacts=dict(sorted(contacts.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


# -- publishing --------------------------------------------------------------------------------------------


def publish_review(plan: Plan) -> tuple[int, int, int]:
    """Cluster, publish the tasks, remember the clustering; returns the review project, tasks offered, clusters."""
    state = plan.state
    previous = load_clustering(state)
    clustering, members, gain_uv = cluster_patient(read_detection(plan.detection), plan.model,
                                                   previous[1] if previous else None)  # fmt: skip
    decided = set(member_decisions(load_reviews(state)))
    version = clustering_version(clustering, decided)
    offered = undecided_part(clustering, decided, members)
    tasks = review_tasks(offered, members, decided, state.key, version, gain_uv)
    review_id, created = ensure_review_project(plan)
    try:
        replace_open_tasks(plan.client, review_id, tasks, version)
    except BaseException:
        if created:
            studio.undo_import(plan.client, review_id, [], project_created=True)
        raise
    save_clustering(state, version, clustering, members)
    return review_id, len(tasks), len(clustering.clusters)


def refresh_review(settings: Settings, state: ProjectState) -> tuple[int, int, int] | None:
    """Recompute a patient's cluster review after a new model or a new detection, when it has one (a linked review
    project and a detection): what ``python -m ls_backend.review --project`` does. None when it has none; failures
    are logged, not raised (the retraining or detection that asked has succeeded)."""
    if review_project(state) is None or latest_detection(state) is None:
        return None
    try:
        done = publish_review(plan_review(settings, state.key))
    except (ValueError, studio.StudioError, OSError) as err:
        logger.warning("project %s: the cluster review was not recomputed: %s", state.key, err)
        return None
    logger.info("project %s: cluster review recomputed: %d task(s) of %d cluster(s) in project %d",
                state.key, done[1], done[2], done[0])  # fmt: skip
    return done


def ensure_review_project(plan: Plan) -> tuple[int, bool]:
    """The patient's review project (created on the first run), linked to the window project, with its webhook."""
    title = plan.window_title + TITLE_SUFFIX
    known = review_project(plan.state)
    description = f"Cluster review of project {plan.state.key}: one task per group of detected spikes"
    project, created = studio.get_or_create_project(plan.client, title, review_label_config(), description)
    review_id = studio.require_id(project.id, f"project {title!r}")
    if known is not None and known != review_id:
        logger.warning("project %s: review project %s replaces %s (renamed or deleted?)", plan.state.key, review_id,
                       known)  # fmt: skip
    link_review_project(plan.state, review_id, title)
    if plan.backend_url is None:
        logger.warning(
            "project %s has no ML backend connected: answers of review project %s reach no backend", plan.state.key,
            review_id,
        )  # fmt: skip
    else:
        studio.connect_webhook(plan.client, review_id, f"{plan.backend_url}/webhook", WEBHOOK_ACTIONS,
                               plan.webhook_secret)  # fmt: skip
    return review_id, created


def replace_open_tasks(client: Any, project_id: int, tasks: list[dict], version: str) -> None:
    """Import ``tasks`` (all or nothing), then delete the unanswered tasks of earlier runs and make ``version`` the
    project's ranking; answered tasks stay."""
    old = [task for task, count in studio.annotation_counts(client, project_id).items() if not count]
    bare = [{k: v for k, v in task.items() if k != "predictions"} for task in tasks]
    created = studio.import_tasks(client, project_id, bare, progress=False) if tasks else []
    try:
        studio.delete_tasks(client, project_id, old)
        if created:  # the scores, as the window project's rankings are pushed (inline ones were not always kept)
            scores = [{**task["predictions"][0], "task": task_id} for task, task_id in zip(tasks, created)]
            client.projects.import_predictions(id=project_id, request=scores)
            client.projects.update(id=project_id, model_version=version, sampling=studio.SAMPLING)
    except BaseException:
        studio.undo_import(client, project_id, created, project_created=False)
        raise
    logger.info("review project %s: %d tasks imported, %d unanswered replaced", project_id, len(created), len(old))
