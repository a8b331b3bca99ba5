"""``python -m converters.import --queue``: one conversion job per recording on the backend's RQ workers (a real
redis-server), the same stores and tasks as a local run, a failed job retried once, a second failure naming the file
and leaving no store behind."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from redis import Redis
from rq import Queue
from rq_workers import in_thread, work_until_done, worker_processes

import converters.convert
import converters.queued
from converters.cli import main
from converters.queued import CONVERT_QUEUE_NAME
from converters.synthetic import PATIENTS, write_edf
from converters.windows import WindowStore


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """A folder of two recordings of one patient (20 s each of synthetic patient C, other seeds)."""
    root = tmp_path_factory.mktemp("cohort")
    for k in range(2):
        write_edf(root / f"night{k}.edf", PATIENTS["C"].with_(seed=k + 1), 20)
    return root


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def test_queued_conversion_gives_the_stores_and_tasks_of_a_local_run(redis_url, recordings, tmp_path, repo_root):
    local, queued = tmp_path / "local.json", tmp_path / "queued.json"
    assert run_cli(recordings, "--patient", "P", "--dry-run", "--out", local, "--store-dir", tmp_path / "a") == 0
    with worker_processes(redis_url, tmp_path, repo_root, [CONVERT_QUEUE_NAME]) as log:
        args = ["--dry-run", "--out", queued, "--store-dir", tmp_path / "b", "--queue", "--redis-url", redis_url]
        assert run_cli(recordings, "--patient", "P", *args) == 0, log.read_text()[-3000:]
        workers_log = log.read_text()
    assert json.loads(local.read_text()) == json.loads(queued.read_text())
    for k in range(2):
        a, b = (WindowStore(tmp_path / run / "P" / f"night{k}.h5") for run in ("a", "b"))
        with a, b:
            assert list(a.ids) == list(b.ids)
            assert np.array_equal(a.read_rows(np.arange(len(a))), b.read_rows(np.arange(len(b))))
    assert "Traceback" not in workers_log


@pytest.fixture
def flaky(monkeypatch):
    """Conversions that fail on the first try of each recording (and on every try of ``always``)."""
    calls: Counter[str] = Counter()
    always: set[str] = set()
    real = converters.convert.convert_recording

    def convert_recording(source, *args, **kwargs):
        name = Path(source).name
        calls[name] += 1
        if calls[name] == 1 or name in always:
            raise OSError(f"{name}: stale file handle")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(converters.convert, "convert_recording", convert_recording)
    monkeypatch.setattr(converters.queued, "CONVERT_QUEUE_NAME", f"test-convert-{uuid.uuid4().hex[:8]}")
    return calls, always


def queued_import(redis_url: str, recordings: Path, stores: Path, out: Path) -> dict:
    """The import command with ``--queue`` in a thread, an in-process worker taking its jobs; its outcome."""
    args = ["--patient", "P", "--dry-run", "--out", out, "--store-dir", stores, "--queue", "--redis-url", redis_url]
    thread, outcome = in_thread(lambda: run_cli(recordings, *args))
    work_until_done(redis_url, converters.queued.CONVERT_QUEUE_NAME, thread)
    return outcome


def test_a_failed_conversion_is_retried_once(redis_url, recordings, tmp_path, flaky):
    calls, _ = flaky
    outcome = queued_import(redis_url, recordings, tmp_path / "stores", tmp_path / "tasks.json")
    assert outcome == {"result": 0}
    assert calls == {"night0.edf": 2, "night1.edf": 2}
    assert sorted(p.name for p in (tmp_path / "stores" / "P").iterdir()) == ["night0.h5", "night1.h5"]


def test_a_second_failure_names_the_file_and_leaves_nothing(redis_url, recordings, tmp_path, flaky, capsys):
    calls, always = flaky
    always.add("night1.edf")
    stores, out = tmp_path / "stores", tmp_path / "tasks.json"
    outcome = queued_import(redis_url, recordings, stores, out)
    assert outcome == {"result": 2}
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith(f"error: {recordings.resolve() / 'night1.edf'}: conversion failed on a worker"), err
    assert "OSError: night1.edf: stale file handle" in err
    assert calls["night1.edf"] == 2
    assert not any(stores.rglob("*.h5")) and not out.exists()  # night0's finished store is removed too
    assert len(Queue(converters.queued.CONVERT_QUEUE_NAME, connection=Redis.from_url(redis_url))) == 0


def test_queue_without_redis_says_how_to_set_it(recordings, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert run_cli(recordings, "--patient", "P", "--dry-run", "--queue", "--store-dir", tmp_path) == 2
    assert "set REDIS_URL or pass --redis-url" in capsys.readouterr().err
