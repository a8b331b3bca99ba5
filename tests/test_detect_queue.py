"""Detection through RQ with a real redis-server: one job per recording, the same events as a local run, a failed
job retried once, a second failure naming the recording and stopping the run with nothing written."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq_workers import in_thread, work_until_done, worker_processes

import ls_backend.detect.queue as detect_queue
from converters.convert import convert_recording
from converters.synthetic import PATIENTS, write_edf
from ls_backend.detect.command import main
from ls_backend.detect.events import Event
from ls_backend.detect.queue import ModelSpec, QueuedDetectionError, detect_recording, run_on_queue
from ls_backend.worker import DETECT_QUEUE_NAME

COLD_START = ModelSpec(None, "cold-start")


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> list[Path]:
    """Two recordings of one patient (20 s each of synthetic patient C, other seeds)."""
    root = tmp_path_factory.mktemp("queued")
    paths = []
    for k in range(2):
        source = write_edf(root / f"night{k}.edf", PATIENTS["C"].with_(seed=k + 1), 20)
        paths.append(Path(convert_recording(source, root / "stores" / f"night{k}.h5").store))
    return paths


@pytest.fixture
def flaky(monkeypatch):
    """Detection that fails on the first try of each recording (and on every try of ``always``)."""
    calls: Counter[str] = Counter()
    always: set[str] = set()

    def detect_store(store, scorer, threshold, block_windows=256, progress=False):
        name = Path(store.path).name
        calls[name] += 1
        if calls[name] == 1 or name in always:
            raise OSError(f"{name}: stale file handle")
        return [Event(1.0, 0.1, 1.05, "A1", threshold, {"A1": threshold}, "", scorer.version)]

    monkeypatch.setattr(detect_queue, "detect_store", detect_store)
    return calls, always


def test_a_failed_job_is_retried_once(redis_url, stores, flaky):
    calls, _ = flaky
    queue_name = f"test-detect-{uuid.uuid4().hex[:8]}"
    thread, outcome = in_thread(lambda: run_on_queue(redis_url, stores, COLD_START, 0.4, queue_name=queue_name,
                                                     progress=False))  # fmt: skip
    work_until_done(redis_url, queue_name, thread)
    assert "error" not in outcome, outcome
    assert [[e.probability for e in events] for events in outcome["result"]] == [[0.4], [0.4]]
    assert calls == {"night0.h5": 2, "night1.h5": 2}
    assert len(Queue(queue_name, connection=Redis.from_url(redis_url))) == 0


def test_a_second_failure_names_the_recording_and_stops_the_run(redis_url, stores, flaky):
    calls, always = flaky
    always.add("night0.h5")
    queue_name = f"test-detect-{uuid.uuid4().hex[:8]}"
    thread, outcome = in_thread(lambda: run_on_queue(redis_url, stores, COLD_START, 0.4, queue_name=queue_name,
                                                     progress=False))  # fmt: skip
    work_until_done(redis_url, queue_name, thread)
    error = outcome.get("error")
    assert isinstance(error, QueuedDetectionError), outcome
    assert str(error).startswith(f"{stores[0]}: detection failed on a worker")
    assert "OSError: night0.h5: stale file handle" in str(error)
    assert calls["night0.h5"] == 2
    connection = Redis.from_url(redis_url)
    assert len(Queue(queue_name, connection=connection)) == 0  # what was left was cancelled with the run


@pytest.fixture
def workers(redis_url, tmp_path, repo_root):
    """Two ``python -m ls_backend.worker`` processes, as deployed, on the suite's Redis."""
    with worker_processes(redis_url, tmp_path, repo_root, [DETECT_QUEUE_NAME]) as log:
        yield log


def test_the_queue_finds_the_same_events_as_a_local_run(redis_url, stores, workers, tmp_path, monkeypatch):
    local = [detect_recording(str(path), COLD_START, 0.5) for path in stores]
    queued = run_on_queue(redis_url, stores, COLD_START, 0.5, progress=False)
    assert queued == local, workers.read_text()[-3000:]
    monkeypatch.setenv("REDIS_URL", redis_url)
    argv = [str(path) for path in stores] + ["--model", "cold-start", "--queue", "--out", str(tmp_path / "out")]
    assert main(argv) == 0, workers.read_text()[-3000:]
    assert (tmp_path / "out").is_dir()
