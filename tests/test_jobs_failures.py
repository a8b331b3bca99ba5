"""The retraining queue when things go wrong: retries wait in real time, corrupt markers are recovered, the file
lock holds across processes, and RQ gives up after its retries without losing the acknowledged request."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from pathlib import Path

import pytest
from rq import SimpleWorker
from rq.job import JobStatus

import ls_backend.worker as worker
from ls_backend.jobs import RetrainQueue
from ls_backend.project_state import ProjectState

WAIT_SECONDS = 60.0  # how long to wait for background work before calling it lost


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {WAIT_SECONDS:.0f} s")
        time.sleep(0.01)


def test_a_failing_job_is_retried_after_the_delay_not_in_a_hot_loop(tmp_path):
    attempts: list[float] = []

    def failing(key):
        attempts.append(time.monotonic())
        raise RuntimeError("Label Studio is down")

    retry_seconds = 0.3
    queue = RetrainQueue(tmp_path, failing, debounce_seconds=0, retry_seconds=retry_seconds, poll_seconds=0.01)
    queue.request(4)
    queue.start()
    try:
        wait_until(lambda: len(attempts) >= 4, "four attempts")
    finally:
        queue.stop()
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert min(gaps) >= 0.9 * retry_seconds, gaps  # polled 30 times per delay: a hot loop retries at once
    assert queue.pending() == ["4"]  # still acknowledged


@pytest.mark.parametrize(
    "content",
    [b"", b'{"generation": 3, "not_bef', b"\xff\xfe not json", b"null", b"[]", b"{}", b'{"generation": "3"}'],
    ids=["empty", "truncated", "binary", "null", "list", "no-generation", "text-generation"],
)
def test_an_unreadable_marker_is_run_once_then_cleared(tmp_path, content):
    other = RetrainQueue(tmp_path, lambda key: None)
    other.request(8)  # a healthy project after the broken one: the round must reach it
    (tmp_path / "7").mkdir()
    ProjectState.of(tmp_path, 7).retrain_marker.write_bytes(content)
    runs = []
    queue = RetrainQueue(tmp_path, runs.append, debounce_seconds=0)
    assert queue.pending() == ["7", "8"]
    assert queue.run_due(now=time.time() + 60) == ["7", "8"] and runs == ["7", "8"]
    assert queue.pending() == [] and queue.run_due(now=time.time() + 60) == [] and runs == ["7", "8"]


def test_a_request_over_an_unreadable_marker_queues_the_project(tmp_path):
    (tmp_path / "7").mkdir()
    ProjectState.of(tmp_path, 7).retrain_marker.write_text('{"reasons": 1}')
    queue = RetrainQueue(tmp_path, lambda key: None, debounce_seconds=0)
    queue.request(7, "ANNOTATION_CREATED")
    marker = queue._read_marker("7")
    assert marker["generation"] >= 1 and marker["reasons"]["ANNOTATION_CREATED"] == 1


def _train_in_another_process(model_dir: str, log_dir: str, name: str, requeue: bool) -> str:
    """A process's worker: its job logs when it starts and ends (and, with ``requeue``, queues one more run)."""

    def job(key: str) -> None:
        log = Path(log_dir)
        (log / f"{name}.start").write_text(repr(time.monotonic()))
        if requeue:
            queue.request(key, "ANNOTATION_CREATED")  # the burst's last annotation, while this run trains
        time.sleep(1.0)
        (log / f"{name}.end").write_text(repr(time.monotonic()))

    queue = RetrainQueue(model_dir, job, debounce_seconds=0, poll_seconds=0.01)
    if not requeue:  # the second process asks only once the first one trains
        while not (Path(log_dir) / "first.start").exists():
            time.sleep(0.01)
    return queue.run_when_due(2)


def test_the_run_lock_keeps_two_processes_off_one_project(tmp_path):
    model_dir, log_dir = tmp_path / "models", tmp_path / "log"
    log_dir.mkdir()
    RetrainQueue(model_dir, lambda key: None, debounce_seconds=0).request(2)
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        first = pool.apply_async(_train_in_another_process, (str(model_dir), str(log_dir), "first", True))
        second = pool.apply_async(_train_in_another_process, (str(model_dir), str(log_dir), "second", False))
        wait_until(lambda: (log_dir / "first.start").exists(), "the first process's run")
        busy = []  # a third process (this one) polling meanwhile finds the project busy
        assert RetrainQueue(model_dir, busy.append).run_due(now=time.time() + 60) == [] and busy == []
        assert (first.get(WAIT_SECONDS), second.get(WAIT_SECONDS)) == ("done", "done")
    times = {path.name: float(path.read_text()) for path in log_dir.iterdir()}
    assert times["first.end"] <= times["second.start"]  # the second waited for the first to finish
    assert RetrainQueue(model_dir, lambda key: None).pending() == []


def test_rq_gives_up_after_its_retries_and_the_request_is_still_acknowledged(redis_url, tmp_path, monkeypatch):
    attempts: list[str] = []

    def out_of_memory(key):
        attempts.append(key)
        raise RuntimeError("out of memory")

    dispatcher = worker.RQDispatcher(redis_url, retry_seconds=1, queue_name=f"test-{uuid.uuid4().hex[:8]}")
    web = RetrainQueue(tmp_path, lambda key: None, debounce_seconds=0, dispatch=dispatcher)
    behind = RetrainQueue(tmp_path, out_of_memory, retry_seconds=0, poll_seconds=0.01)
    monkeypatch.setattr(worker, "_worker_state", lambda: (behind, dispatcher))
    try:
        web.request(9)
        job = dispatcher.queue.jobs[0]
        rounds = 0
        while job.get_status(refresh=True) not in (JobStatus.FAILED, JobStatus.FINISHED):  # each round enqueues
            # the retries that are due
            rounds += 1
            assert rounds < 100 and len(attempts) <= 6, f"still retrying after {len(attempts)} attempts"
            SimpleWorker([dispatcher.queue], connection=dispatcher.redis).work(burst=True, with_scheduler=True)
            time.sleep(0.2)
        assert job.get_status() == JobStatus.FAILED and attempts == ["9"] * 6  # the first run and RQ's 5 retries
        assert job.id in dispatcher.queue.failed_job_registry.get_job_ids()
        assert "retraining project 9 failed" in job.latest_result().exc_string
        for _ in range(3):  # nothing runs it again by itself
            SimpleWorker([dispatcher.queue], connection=dispatcher.redis).work(burst=True, with_scheduler=True)
        assert len(attempts) == 6 and web.pending() == ["9"]  # the request stays acknowledged on disk
        web.request(9)  # the next annotation gets a job of its own
        assert len(dispatcher.queue) == 1
    finally:
        dispatcher.queue.empty()
        dispatcher.release("9")


def test_the_worker_thread_survives_a_round_that_raises(tmp_path, monkeypatch):
    queue = RetrainQueue(tmp_path, lambda key: None, debounce_seconds=0, poll_seconds=0.01)
    rounds = []
    real = queue.run_due

    def flaky_round(now=None):
        rounds.append(now)
        if len(rounds) == 1:
            raise OSError("MODEL_DIR is unmounted")
        return real(now)

    monkeypatch.setattr(queue, "run_due", flaky_round)
    done = threading.Event()
    queue.job = lambda key: done.set()
    queue.request(1)
    queue.start()
    try:
        assert done.wait(WAIT_SECONDS)
    finally:
        queue.stop()
    assert len(rounds) >= 2
