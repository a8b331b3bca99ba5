"""Review tasks built from a detection output: one per cluster with undecided members, its members and shown
members, the picture, the ordering scores, and the clustering kept for the next run."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest
from review_helpers import review_patient

from ls_backend.project_state import ProjectState
from ls_backend.review.answers import ACCEPTED, ANSWERS
from ls_backend.review.clusters import review_order
from ls_backend.review.command import cluster_patient, undecided_part
from ls_backend.review.command import main as review_main
from ls_backend.review.members import read_detection
from ls_backend.review.render import shown_slots
from ls_backend.review.store import load_clustering, save_clustering
from ls_backend.review.tasks import ANSWER_HOTKEYS, clustering_version, review_label_config, review_tasks

MAX_IMAGE_BYTES = 300_000


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    return review_patient(tmp_path_factory.mktemp("review"))


@pytest.fixture(scope="module")
def clustered(patient):
    return cluster_patient(read_detection(patient.detection), patient.model, None)


def test_one_task_per_cluster_with_its_members_in_review_order(patient, clustered):
    clustering, members, gain_uv = clustered
    assert clustering.clusters, "the synthetic spikes form at least one cluster"
    confirmed = [e for rec in read_detection(patient.detection) for e in rec.events if e.reviewed == "confirmed"]
    assert confirmed and all(e.peak not in [m.peak for m in members.values()] for e in confirmed)

    tasks = review_tasks(clustering, members, set(), "4", "review-test", gain_uv)
    order = review_order(clustering)
    assert [t["data"]["cluster_id"] for t in tasks] == [c.id for c in order]
    scores = [t["predictions"][0]["score"] for t in tasks]
    assert scores == sorted(scores) and scores[0] == 0 and scores[-1] < 1
    assert {t["predictions"][0]["model_version"] for t in tasks} == {"review-test"}
    for task, cluster in zip(tasks, order):
        data = task["data"]
        assert data["members"] == list(cluster.members) and data["window_project"] == "4"
        assert list(data["shown_members"].values()) == [m for _, m in shown_slots(cluster)]
        assert [c["value"] for c in data["shown"]] == list(data["shown_members"])
        for label, member in data["shown_members"].items():
            assert members[member].channel in label  # the peak channel is named in the choice
        png = base64.b64decode(data["image"].removeprefix("data:image/png;base64,"))
        assert png.startswith(b"\x89PNG") and len(data["image"]) < MAX_IMAGE_BYTES
        assert str(cluster.size) in data["summary"] and cluster.shaft in data["summary"]


def test_decided_members_are_not_offered_again(clustered):
    clustering, members, gain_uv = clustered
    first = clustering.clusters[0]
    decided = set(first.members)
    assert first.id not in [t["data"]["cluster_id"] for t in review_tasks(clustering, members, decided, "4", "v", 75)]
    partly = set(first.members[:2])
    offered = undecided_part(clustering, partly, members)
    assert offered.clusters[0].members == first.members[2:]
    assert sum(offered.clusters[0].peak_contacts.values()) == first.size - 2
    assert clustering_version(clustering, partly) != clustering_version(clustering, set())


def test_the_clustering_is_kept_and_its_ids_carry_over(tmp_path, patient, clustered):
    clustering, members, _ = clustered
    state = ProjectState.of(tmp_path, 4)
    save_clustering(state, "review-a", clustering, members)
    version, loaded, locations = load_clustering(state)
    assert version == "review-a" and loaded == clustering
    assert {m for c in clustering.clusters for m in c.members} <= set(locations)
    again, _, _ = cluster_patient(read_detection(patient.detection), patient.model, loaded)
    assert [c.id for c in again.clusters] == [c.id for c in clustering.clusters]


def test_the_label_config_has_the_answers_with_their_hotkeys_and_dynamic_exclusions():
    root = ET.fromstring(review_label_config())
    answer = root.find("Choices[@name='answer']")
    assert [(c.get("value"), c.get("hotkey")) for c in answer] == [(a, ANSWER_HOTKEYS[a]) for a in ANSWERS]
    assert len(set(ANSWER_HOTKEYS.values())) == 3 and ANSWER_HOTKEYS[ACCEPTED] == "a"
    excluded = root.find("Choices[@name='excluded']")
    assert excluded.get("value") == "$shown" and excluded.get("choice") == "multiple"
    assert root.find("Image").get("value") == "$image"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--project", "x3"], "--project: project must be a Label Studio project id"),
        (["--project", "3"], "project 3 has no detection yet: run python -m ls_backend.detect"),
        (["--project", "3", "--detection", "nowhere"], "--detection nowhere: not a detection output"),
        (["--project", "3", "--detection", "DETECTION", "--model", "missing.pt"], "--model: "),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, patient, argv, message):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    argv = [str(patient.detection) if a == "DETECTION" else a for a in argv]
    assert review_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m ls_backend.review: error: ") and message in err and err.count("\n") == 1


def test_a_review_is_recomputed_only_for_a_patient_that_has_one(tmp_path, caplog):
    """After a retraining or a detection: nothing without a linked review project or a detection; a refresh that
    cannot run (no model here) is logged, never raised."""
    from ls_backend.config import Settings
    from ls_backend.detect.exports import record_detection
    from ls_backend.review.command import refresh_review
    from ls_backend.review.store import link_review_project

    settings = Settings(model_dir=tmp_path / "models", window_store_dir=tmp_path / "stores")
    state = ProjectState.of(settings.model_dir, 5)
    assert refresh_review(settings, state) is None  # no review project
    link_review_project(state, 17, "P05 - cluster review")
    assert refresh_review(settings, state) is None  # no detection yet
    out = tmp_path / "detections"
    out.mkdir()
    (out / "detection.json").write_text('{"recordings": []}')
    record_detection(state, out, {})
    with caplog.at_level("WARNING"):
        assert refresh_review(settings, state) is None
    assert "project 5: the cluster review was not recomputed" in caplog.text
