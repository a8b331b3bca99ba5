"""Old rankings deleted in the background (ls_backend.cleanup): what is recorded, what is never deleted, the pause
while a retraining is on its way to a live ranking, and a failed round retried. The deletion against the real Label
Studio is tested in test_ranking_push.py."""

from __future__ import annotations

import json
import os
import threading
import time
from types import SimpleNamespace

import pytest

from ls_backend import cleanup
from ls_backend.config import Settings
from ls_backend.project_state import ProjectState, write_json_atomic


class FakePredictions:
    """``client.predictions`` holding ``{id: model_version}`` (prediction ``i`` on task ``10 * i``); deletions and
    listings recorded in order."""

    def __init__(self, versions: dict[int, str]):
        self.versions = dict(versions)
        self.deleted: list[int] = []
        self.listed: list[dict] = []
        self.fail = False

    def list(self, **which: int):
        if self.fail:
            raise ConnectionError("Label Studio is away")
        self.listed.append(which)
        return [SimpleNamespace(id=i, model_version=v) for i, v in self.versions.items()
                if which.get("task", 10 * i) == 10 * i]  # fmt: skip

    def delete(self, id: int) -> None:
        self.deleted.append(id)
        del self.versions[id]


@pytest.fixture
def state(tmp_path) -> ProjectState:
    state = ProjectState.of(tmp_path / "models", 3)
    state.dir.mkdir(parents=True)
    return state


def stale(*versions: str) -> dict:
    return dict.fromkeys(versions)


def test_retire_records_own_versions_once_in_order(state):
    cleanup.retire(state, stale("p3-v0001", None, "events", "p4-v0001", "cold-start"))
    cleanup.retire(state, stale("p3-v0001", "p3-v0002"))
    assert cleanup.stale_versions(state) == ["p3-v0001", "cold-start", "p3-v0002"]


def test_a_known_head_is_looked_up_task_by_task(state):
    state.write_ranking("p3-v0003", "p3-v0002", {})
    cleanup.retire(state, {"p3-v0001": [10, 30]})
    predictions = FakePredictions({1: "p3-v0001", 2: "p3-v0002", 3: "p3-v0001", 4: "events"})
    assert cleanup.delete_stale(SimpleNamespace(predictions=predictions), state) == 2
    assert predictions.deleted == [1, 3] and predictions.listed == [{"task": 10}, {"task": 30}]
    assert json.loads(state.stale_rankings.read_text()) == {"versions": [], "heads": {}}


def test_the_live_and_previous_rankings_are_never_deleted(state):
    state.write_ranking("p3-v0003", "p3-v0002", {})
    cleanup.retire(state, stale("p3-v0001", "p3-v0002", "p3-v0003"))
    predictions = FakePredictions({1: "p3-v0001", 2: "p3-v0002", 3: "p3-v0003", 4: "events", 5: "p3-v0001"})
    assert cleanup.delete_stale(SimpleNamespace(predictions=predictions), state) == 2
    assert predictions.deleted == [1, 5] and cleanup.stale_versions(state) == ["p3-v0002", "p3-v0003"]


def test_deletion_waits_while_a_ranking_is_due(state, monkeypatch):
    monkeypatch.setattr(cleanup, "DELETE_CHUNK", 2)
    cleanup.retire(state, stale("p3-v0001"))
    predictions = FakePredictions({i: "p3-v0001" for i in range(6)})
    state.ranking_due.touch()
    done = threading.Thread(target=cleanup.delete_stale, args=(SimpleNamespace(predictions=predictions), state, 0.01))
    done.start()
    time.sleep(0.3)
    assert predictions.deleted == []  # nothing while the retraining has not gone live
    state.ranking_due.unlink()
    done.join(10)
    assert predictions.deleted == list(range(6)) and cleanup.stale_versions(state) == []


def test_a_due_flag_left_by_a_crashed_run_is_ignored(state):
    cleanup.retire(state, stale("p3-v0001"))
    state.ranking_due.touch()
    old = time.time() - cleanup.DUE_MAX_AGE_SECONDS - 10
    os.utime(state.ranking_due, (old, old))
    predictions = FakePredictions({1: "p3-v0001"})
    assert cleanup.delete_stale(SimpleNamespace(predictions=predictions), state) == 1


def test_the_cleaner_retries_a_failed_round_and_keeps_the_record(state, monkeypatch):
    predictions = FakePredictions({1: "p3-v0001", 2: "p3-v0002"})
    predictions.fail = True
    monkeypatch.setattr(cleanup.studio, "connect", lambda url, key: SimpleNamespace(predictions=predictions))
    settings = Settings(model_dir=state.model_dir)
    cleanup.retire(state, stale("p3-v0001"))
    cleaner = cleanup.RankingCleaner(retry_seconds=0.2)
    cleaner.submit(settings, state)
    assert not cleaner.wait_idle(0.1)  # the failed round waits for its retry
    assert cleanup.stale_versions(state) == ["p3-v0001"]
    predictions.fail = False
    assert cleaner.wait_idle(10)
    assert predictions.deleted == [1] and cleanup.stale_versions(state) == []


def test_resume_hands_over_what_a_stopped_process_left(state, monkeypatch):
    submitted = []
    monkeypatch.setattr(cleanup.CLEANER, "submit", lambda settings, s: submitted.append(s.key))
    cleanup.resume(Settings(model_dir=state.model_dir))
    assert submitted == []
    cleanup.retire(state, stale("p3-v0001"))
    cleanup.resume(Settings(model_dir=state.model_dir))
    assert submitted == ["3"]


@pytest.mark.parametrize("active", [False, True])
def test_deletion_pauses_between_chunks_while_clinicians_label(state, monkeypatch, active):
    monkeypatch.setattr(cleanup, "DELETE_CHUNK", 2)
    slept = []
    monkeypatch.setattr(cleanup.time, "sleep", slept.append)
    write_json_atomic(state.last_run, {"at": time.time() - (0 if active else 2 * cleanup.ACTIVE_SECONDS)})
    assert cleanup.labeling_active(state) == active
    cleanup.retire(state, stale("p3-v0001"))
    predictions = FakePredictions({i: "p3-v0001" for i in range(6)})
    cleanup.delete_stale(SimpleNamespace(predictions=predictions), state)
    assert len(predictions.deleted) == 6 and len(slept) == (3 if active else 0)


def test_a_queued_retraining_means_clinicians_are_labeling(state):
    assert not cleanup.labeling_active(state)
    state.retrain_marker.write_text("{}")
    assert cleanup.labeling_active(state)
