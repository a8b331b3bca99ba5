"""Retraining workers through RQ: ``python -m ls_backend.worker`` (when ``REDIS_URL`` is set).

Workers also take the whole-recording detection jobs of ``python -m ls_backend.detect --queue`` (queue
``spike-al-detect``) and the conversions of ``python -m converters.import --queue`` (queue ``spike-al-convert``),
after any retraining waiting (see :mod:`converters.queued`).

The web processes still write the retraining marker in ``MODEL_DIR/<project>/`` (what was acknowledged), then enqueue
one job per project: a Redis key per project keeps a burst of webhooks to one queued job, and is released just before
the training starts, so a request arriving during a run queues exactly one more. Any number of workers, on any
machine that mounts the same ``MODEL_DIR`` and window stores, take jobs; the marker's file lock keeps two of them off
one project. A worker starting up queues every marker it finds, so nothing acknowledged is lost with Redis.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import cache

from redis import Redis
from rq import Queue, Retry, SimpleWorker

from converters.queued import CONVERT_QUEUE_NAME

from .config import Settings
from .jobs import RetrainQueue

logger = logging.getLogger(__name__)

QUEUE_NAME = "spike-al-retrain"
DETECT_QUEUE_NAME = "spike-al-detect"  # python -m ls_backend.detect --queue: one job per recording
JOB_TIMEOUT_SECONDS = 6 * 3600  # a retraining of a large project on CPU; RQ kills a job past it
BURST_CLEANUP_SECONDS = 3600.0  # how long a --burst worker waits for old rankings to be deleted before it exits
_PENDING_KEY = "spike-al:retrain-queued:{}"
_PENDING_TTL_SECONDS = 24 * 3600  # a queued flag outlives no lost job by more than this


class RQDispatcher:
    """Enqueue one RQ job per project with a retraining requested (the ``dispatch`` of :class:`RetrainQueue`)."""

    def __init__(self, redis_url: str, retry_seconds: float = 60.0, queue_name: str = QUEUE_NAME):
        self.redis = Redis.from_url(redis_url)
        self.queue = Queue(queue_name, connection=self.redis)
        self.retry = Retry(max=5, interval=max(1, round(retry_seconds)))

    def __call__(self, key: str) -> None:
        if self.redis.set(_PENDING_KEY.format(key), 1, nx=True, ex=_PENDING_TTL_SECONDS):
            self.queue.enqueue(
                run_project,
                key,
                job_timeout=JOB_TIMEOUT_SECONDS,
                retry=self.retry,
                description=f"retrain project {key}",
            )

    def release(self, key: str) -> None:
        """The job is about to train: later requests need a job of their own."""
        self.redis.delete(_PENDING_KEY.format(key))


def _settings() -> Settings:
    """The settings from the environment; a worker without ``REDIS_URL`` has nothing to take jobs from."""
    settings = Settings.from_env()
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set: start the worker with the Redis URL the backend uses")
    return settings


@cache
def _worker_state() -> tuple[RetrainQueue, RQDispatcher]:
    """The queue and dispatcher of this worker process, built once (models stay cached between jobs)."""
    from .retrain import retraining_job  # torch and the model: only in workers, not in the web app that imports us

    settings = _settings()
    dispatcher = RQDispatcher(settings.redis_url)
    queue = RetrainQueue(settings.model_dir, retraining_job(settings), settings.retrain_debounce_seconds)
    return queue, dispatcher


def run_project(key: str) -> str:
    """The RQ job: retrain one project once its burst is quiet; raise on failure so that RQ retries it."""
    queue, dispatcher = _worker_state()
    outcome = queue.run_when_due(key, before_run=lambda: dispatcher.release(key))
    if outcome == "failed":
        raise RuntimeError(f"retraining project {key} failed; see this worker's log")
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ls_backend.worker",
        description="Run the retraining jobs queued in Redis by the ML backend, and the detection jobs of "
        "python -m ls_backend.detect --queue and the conversions of python -m converters.import --queue "
        "(settings from the environment: "
        "REDIS_URL, MODEL_DIR, WINDOW_STORE_DIR, LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY; see README).",
    )
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    args = parser.parse_args(argv)
    try:
        settings = _settings()
    except ValueError as err:
        print(f"python -m ls_backend.worker: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    queue, dispatcher = _worker_state()
    for key in queue.pending():  # acknowledged before a crash or a Redis restart
        dispatcher(key)
    later = [Queue(name, connection=dispatcher.redis) for name in (DETECT_QUEUE_NAME, CONVERT_QUEUE_NAME)]
    worker = SimpleWorker([dispatcher.queue, *later], connection=dispatcher.redis)  # retrainings first: awaited
    worker.work(burst=args.burst, with_scheduler=not args.burst, logging_level=settings.log_level)
    if args.burst:  # the old rankings this worker retired are deleted before it exits
        from .cleanup import CLEANER

        CLEANER.wait_idle(BURST_CLEANUP_SECONDS)
    return 0


if __name__ == "__main__":  # RQ refuses jobs of __main__: enqueue the importable module's run_project
    from ls_backend.worker import main as module_main

    sys.exit(module_main())
