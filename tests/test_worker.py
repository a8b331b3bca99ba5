"""Retraining through RQ with a real redis-server: one job per burst, one more for a request during a run, nothing
acknowledged lost when a worker restarts, failures retried by RQ."""

from __future__ import annotations

import uuid

import pytest
from rq import SimpleWorker

import ls_backend.worker as worker
from ls_backend.jobs import RetrainQueue


@pytest.fixture
def rq_setup(redis_url, tmp_path, monkeypatch):
    """A web-side queue that dispatches to RQ, and the worker-side queue that RQ jobs run (recording the runs)."""
    runs: list[str] = []
    dispatcher = worker.RQDispatcher(redis_url, retry_seconds=1, queue_name=f"test-{uuid.uuid4().hex[:8]}")
    web = RetrainQueue(tmp_path, lambda key: None, debounce_seconds=0, dispatch=dispatcher)
    jobs = {"run": runs.append}
    behind = RetrainQueue(tmp_path, lambda key: jobs["run"](key), retry_seconds=0, poll_seconds=0.01)
    monkeypatch.setattr(worker, "_worker_state", lambda: (behind, dispatcher))
    yield web, dispatcher, runs, jobs
    dispatcher.queue.empty()
    dispatcher.redis.delete(*dispatcher.redis.keys("spike-al:retrain-queued:*") or ["none"])


def work(dispatcher) -> None:
    SimpleWorker([dispatcher.queue], connection=dispatcher.redis).work(burst=True)


def test_a_burst_of_webhooks_is_one_rq_job_and_one_training(rq_setup):
    web, dispatcher, runs, _ = rq_setup
    for _ in range(50):
        web.request("3.1700000000", "ANNOTATION_CREATED")
    assert len(dispatcher.queue) == 1
    work(dispatcher)
    assert runs == ["3"] and web.pending() == []


def test_a_request_during_a_training_queues_exactly_one_more(rq_setup):
    web, dispatcher, runs, jobs = rq_setup

    def training(key):
        runs.append(key)
        if len(runs) == 1:  # the burst's last annotations arrive meanwhile
            web.request(key, "ANNOTATION_CREATED")
            web.request(key, "ANNOTATION_CREATED")

    jobs["run"] = training
    web.request(5)
    work(dispatcher)
    assert runs == ["5", "5"] and web.pending() == []


def test_a_failed_training_keeps_its_marker_and_a_restarted_worker_requeues_it(rq_setup, redis_url, monkeypatch):
    web, dispatcher, runs, jobs = rq_setup

    def out_of_memory(key):
        raise RuntimeError("out of memory")

    jobs["run"] = out_of_memory
    web.request(9)
    work(dispatcher)  # fails; RQ schedules a retry, the marker stays
    assert web.pending() == ["9"]
    dispatcher.queue.empty()  # as if Redis lost the job
    dispatcher.release("9")
    jobs["run"] = runs.append
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert worker.main(["--burst"]) == 0  # a worker starting up queues every marker it finds
    assert runs == ["9"] and web.pending() == []


def test_the_worker_refuses_to_start_without_redis(monkeypatch, capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert worker.main(["--burst"]) == 2
    assert "REDIS_URL is not set" in capsys.readouterr().err
