"""The retraining queue: bursts coalesce, nothing acknowledged is lost, failures are retried."""

import threading

import pytest

from ls_backend.jobs import RetrainQueue
from ls_backend.project_state import project_key


def test_project_keys_are_ids_only():
    assert project_key("12.1700000000") == "12" and project_key(7) == "7"
    for bad in ("../etc", "12/..", "", "a.1"):
        with pytest.raises(ValueError, match="project must be a Label Studio project id"):
            project_key(bad)


def test_a_burst_becomes_one_run_after_it_is_quiet(tmp_path):
    runs = []
    queue = RetrainQueue(tmp_path, runs.append, debounce_seconds=10)
    for _ in range(50):
        queue.request("3.1700000000", "ANNOTATION_CREATED")
    assert queue.pending() == ["3"]
    marker_time = queue._read_marker("3")["not_before"]
    assert queue.run_due(now=marker_time - 1) == [] and runs == []
    assert queue.run_due(now=marker_time + 1) == ["3"] and runs == ["3"]
    assert queue.pending() == []


def test_a_request_during_a_run_triggers_another_run(tmp_path):
    runs = []

    def job(key):
        runs.append(key)
        if len(runs) == 1:
            queue.request(key, "ANNOTATION_CREATED")  # the last annotation of the burst arrives meanwhile

    queue = RetrainQueue(tmp_path, job, debounce_seconds=0)
    queue.request(5)
    queue.run_due(now=1e12)
    assert queue.pending() == ["5"]
    queue.run_due(now=1e12)
    assert runs == ["5", "5"] and queue.pending() == []


def test_queued_work_survives_a_restart_and_failures_are_retried(tmp_path):
    RetrainQueue(tmp_path, lambda key: None).request(9)  # acknowledged, then the process dies
    attempts = []

    def flaky(key):
        attempts.append(key)
        if len(attempts) == 1:
            raise RuntimeError("out of memory")

    queue = RetrainQueue(tmp_path, flaky, retry_seconds=30)
    assert queue.run_due(now=1e12) == ["9"]
    assert queue.pending() == ["9"] and queue.counts["failed"] == 1
    assert queue.run_due(now=1e12 + 60) == ["9"]
    assert queue.pending() == [] and queue.counts["done"] == 1


def test_the_worker_thread_runs_queued_jobs(tmp_path):
    done = threading.Event()
    queue = RetrainQueue(tmp_path, lambda key: done.set(), debounce_seconds=0, poll_seconds=0.01)
    queue.start()
    try:
        queue.request(1)
        assert done.wait(30)
    finally:
        queue.stop()
