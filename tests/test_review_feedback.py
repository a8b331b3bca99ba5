"""A review answer flowing back: the annotation parsed into a ClusterReview, stored (a second review, an update, a
deletion), received by the backend's webhook, joined to the training set, applied to the detection exports and
counted in the budget report."""

from __future__ import annotations

import numpy as np
import pytest
from review_helpers import review_patient

from converters.windows import WindowStore
from ls_backend.app import create_app
from ls_backend.budget.plan import Budget
from ls_backend.budget.render import assessment_of, key_numbers
from ls_backend.budget.status import compute_status
from ls_backend.config import Settings
from ls_backend.detect import command as detect_command
from ls_backend.detect.command import Plan as DetectPlan
from ls_backend.detect.queue import ModelSpec
from ls_backend.labels import TaskLabel
from ls_backend.loop import Labeled
from ls_backend.project_state import ProjectState
from ls_backend.review.answers import ACCEPTED, MIXED, REJECTED, REVIEW_WEIGHT, ClusterReview, member_decisions
from ls_backend.review.command import cluster_patient
from ls_backend.review.exports import matched_ids, review_states
from ls_backend.review.feedback import review_of_annotation
from ls_backend.review.members import read_detection
from ls_backend.review.store import (
    forget_reviews,
    link_review_project,
    load_reviews,
    record_review,
    save_clustering,
)
from ls_backend.review.training import with_cluster_reviews

MEMBERS = ["rec@1000", "rec@2000", "rec@3000", "rec@4000"]
SHOWN = {"R1 · A1-A2 · rec 00:00:01.000": "rec@1000", "A1 · A2-A3 · rec 00:00:04.000": "rec@4000"}


def review_task(task_id: int = 7, cluster_id: str = "c1", members: list[str] = MEMBERS) -> dict:
    return {"id": task_id, "data": {"cluster_id": cluster_id, "members": members, "shown_members": SHOWN}}


def annotation(answer: str | None, excluded: list[str] = (), annotation_id: int = 1) -> dict:
    result = [] if answer is None else [{"from_name": "answer", "type": "choices", "value": {"choices": [answer]}}]
    if excluded:
        result.append({"from_name": "excluded", "type": "choices", "value": {"choices": list(excluded)}})
    return {"id": annotation_id, "result": result}


# -- parsing -----------------------------------------------------------------------------------------------


def test_an_annotation_becomes_a_cluster_review():
    review = review_of_annotation(review_task(), annotation(ACCEPTED, ["A1 · A2-A3 · rec 00:00:04.000"]))
    assert review == ClusterReview("c1", ACCEPTED, tuple(MEMBERS), frozenset({"rec@4000"}))
    assert review_of_annotation(review_task(), annotation(MIXED)).excluded == frozenset()


@pytest.mark.parametrize(
    ("task", "answer", "excluded", "message"),
    [
        (review_task(), ACCEPTED, ["R9 · Z1-Z2"], "'R9 · Z1-Z2'] are not among its shown members"),
        (review_task(), None, [], "expected one answer"),
        (review_task(), "Maybe", [], "expected one answer"),
        ({"id": 3, "data": {"window_id": "w"}}, ACCEPTED, [], "review task 3: no data.cluster_id"),
    ],
)
def test_an_unusable_annotation_is_named(task, answer, excluded, message):
    with pytest.raises(ValueError, match="review task") as err:
        review_of_annotation(task, annotation(answer, excluded))
    assert message in str(err.value)


# -- storage -----------------------------------------------------------------------------------------------


def test_a_second_review_and_an_update_replace_earlier_decisions(tmp_path):
    state = ProjectState.of(tmp_path, 3)
    record_review(state, 1, ClusterReview("c1", ACCEPTED, tuple(MEMBERS)))
    assert record_review(state, 2, ClusterReview("c1", REJECTED, tuple(MEMBERS[:2]), frozenset({"rec@1000"}))) == 2
    decisions = member_decisions(load_reviews(state))
    assert decisions["rec@2000"].answer == REJECTED and decisions["rec@3000"].answer == ACCEPTED
    assert decisions["rec@1000"].excluded
    # the first annotation updated: it is now the latest, and decides the members it has
    record_review(state, 1, ClusterReview("c1", MIXED, tuple(MEMBERS)))
    assert [r.answer for r in load_reviews(state)] == [REJECTED, MIXED]
    assert member_decisions(load_reviews(state))["rec@2000"].answer == MIXED
    assert forget_reviews(state, [1, 99]) == 1
    assert [r.answer for r in load_reviews(state)] == [REJECTED]


# -- the webhook -------------------------------------------------------------------------------------------


class StubEngine:
    def model_version(self, project):
        return "v"

    def has_ranking(self, project):
        return True


class RecordingQueue:
    def __init__(self):
        self.requests = []

    def request(self, project, reason=""):
        self.requests.append((str(project), reason))

    def pending(self):
        return []


def test_the_webhook_stores_the_answer_and_queues_the_window_project(tmp_path):
    settings = Settings(model_dir=tmp_path / "models")
    queue = RecordingQueue()
    client = create_app(settings, StubEngine(), queue).test_client()
    state = ProjectState.of(settings.model_dir, 3)
    link_review_project(state, 17, "P01 - cluster review")

    body = {"action": "ANNOTATION_CREATED", "project": {"id": 17}, "task": review_task(),
            "annotation": annotation(REJECTED, ["R1 · A1-A2 · rec 00:00:01.000"], annotation_id=5)}  # fmt: skip
    response = client.post("/webhook", json=body)
    assert response.status_code == 201 and response.json["project"] == "3"
    assert queue.requests == [("3", "REVIEW_ANNOTATION_CREATED")]
    assert load_reviews(state) == [ClusterReview("c1", REJECTED, tuple(MEMBERS), frozenset({"rec@1000"}))]

    body["annotation"] = annotation(ACCEPTED, ["R7 · nowhere"], annotation_id=6)
    response = client.post("/webhook", json=body)
    assert response.status_code == 400 and "R7 · nowhere" in response.json["detail"]
    assert len(load_reviews(state)) == 1

    deleted = {"action": "ANNOTATIONS_DELETED", "project": {"id": 17}, "annotations": [{"id": 5}]}
    assert client.post("/webhook", json=deleted).status_code == 201 and load_reviews(state) == []
    # a window project's webhook still queues that project
    window = {"action": "ANNOTATION_CREATED", "project": {"id": 3}}
    assert client.post("/webhook", json=window).status_code == 201
    assert queue.requests[-1] == ("3", "ANNOTATION_CREATED")


# -- training, exports, budget -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    return review_patient(tmp_path_factory.mktemp("review"))


@pytest.fixture
def reviewed(tmp_path, patient):
    """Project 3 with its clustering stored, its first cluster accepted (one member excluded) and the second
    rejected."""
    clustering, members, _ = cluster_patient(read_detection(patient.detection), patient.model, None)
    state = ProjectState.of(tmp_path / "models", 3)
    save_clustering(state, "review-a", clustering, members)
    first, second = clustering.clusters[:2]
    record_review(state, 1, ClusterReview(first.id, ACCEPTED, first.members, frozenset(first.members[:1])))
    record_review(state, 2, ClusterReview(second.id, REJECTED, second.members))
    return state, first, second, members


def clinician_label(store_path, peak: float) -> tuple[TaskLabel, float]:
    """A clinician's 'No spike' label on the store window that holds ``peak``, and the window's end."""
    with WindowStore(store_path) as store:
        row = int(np.searchsorted(store.starts / store.sfreq, peak, side="right") - 1)
        onset = float(store.starts[row] / store.sfreq)
        label = TaskLabel(1, str(store.ids[row]), store_path.name, onset, 0.0)
        return label, onset + store.window_samples / store.sfreq


def test_review_labels_join_the_training_set_and_a_clinician_label_wins(reviewed, patient):
    state, first, second, members = reviewed
    label, end = clinician_label(patient.store, members[first.members[1]].peak)
    with WindowStore(patient.store) as store:
        labeled = Labeled(store.read_rows(np.array([0, 1])), np.array([1.0, 0.0], np.float32), sfreq=store.sfreq,
                          ids=np.array([1, 2]))  # fmt: skip
    joined, n_review = with_cluster_reviews(state, [label], labeled, patient.store.parent)
    in_window = {m for m in first.members + second.members if label.onset_seconds <= members[m].peak < end}
    assert first.members[1] in in_window
    expected = (set(first.members[1:]) | set(second.members)) - in_window
    assert n_review == len(expected) and set(joined.ids[2:]) == expected
    assert joined.X.shape == (2 + n_review, *labeled.X.shape[1:])
    assert np.all(joined.weight[2:] == REVIEW_WEIGHT) and np.all(joined.weight[:2] == 1)
    targets = dict(zip(joined.ids[2:], joined.y[2:]))
    assert all(targets[m] == 1 for m in first.members[2:] if m in expected)
    assert all(targets[m] == 0 for m in second.members if m in expected)


def test_decisions_mark_the_exported_events(reviewed, patient, tmp_path):
    state, first, second, members = reviewed
    states = review_states(state, [], patient.store.parent)
    events = [e for rec in read_detection(patient.detection) for e in rec.events]
    moved = [e.__class__(**{**e.__dict__, "peak": e.peak + 0.01}) for e in events]  # a retrained model's peaks
    ids = matched_ids("sub-04_task-rest", moved, states)
    assert {i for i in ids if i in states} == set(states)

    def exported(keep_rejected: bool) -> list:
        plan = DetectPlan([patient.store], ModelSpec(None, "cold-start"), "m", 0.5, tmp_path / "out", 256, "",
                          state, review_states=states, keep_rejected=keep_rejected)  # fmt: skip
        return detect_command.recording_events(plan, patient.store, events).events

    kept = exported(False)
    assert len(kept) == len(events) - len(second.members)
    assert sum(e.reviewed == "accepted" for e in kept) == len(first.members) - 1  # the excluded one is not
    assert {e.reviewed for e in exported(True)} >= {"rejected", "accepted", "confirmed"}


def test_the_budget_counts_review_decisions_apart():
    status = compute_status("3", "P01", Budget(), [], [], {}, reviews=(2, 31))
    rows = dict(key_numbers(status, assessment_of(status)))
    assert status.spent == 0 and status.cluster_reviews == 2 and status.review_labeled_windows == 31
    assert rows["Cluster reviews"].startswith("2 decisions, 31 detections labeled")
