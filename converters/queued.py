"""Jobs on the backend's RQ workers, all or nothing: one job per recording, waited for with a progress bar.

The import's conversions (queue :data:`CONVERT_QUEUE_NAME`) and the whole-recording detections
(``ls_backend.detect.queue``) both run this way: each job is a plain function of paths and numbers, so a worker on
any machine that mounts the recordings and stores at the same paths runs it (``python -m ls_backend.worker``). A job
that fails is retried once; a second failure, a job lost by Redis, or Ctrl-C cancels the jobs not yet finished and
raises, naming the recording and the reason: the caller then writes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

CONVERT_QUEUE_NAME = "spike-al-convert"  # python -m converters.import --queue: one conversion per recording
JOB_TIMEOUT_SECONDS = 6 * 3600  # one 3-day recording on a slow worker; RQ kills a job past it
RESULT_TTL_SECONDS = 7 * 24 * 3600  # a result waits this long for the command that asked for it
POLL_SECONDS = 0.5


class QueuedJobError(RuntimeError):
    """A recording's job failed twice (or was lost): the message names the recording and the reason."""


def run_jobs(
    redis_url: str,
    queue_name: str,
    function: Callable[..., Any],
    arguments: Sequence[tuple],
    names: Sequence[str],
    what: str,
    progress: bool = True,
) -> list[Any]:
    """``function(*args)`` for each of ``arguments`` as one RQ job on ``queue_name``; their results, in order.

    ``names`` name each job's recording in the progress bar and errors; ``what`` says what a job does ("conversion",
    "detection"). Raises :class:`QueuedJobError` at the first job that failed twice, once the others are cancelled.
    """
    if len(names) != len(arguments):
        raise ValueError(f"run_jobs: {len(names)} names for {len(arguments)} jobs")
    queue = Queue(queue_name, connection=Redis.from_url(redis_url))
    jobs = [
        queue.enqueue(
            function,
            *args,
            job_timeout=JOB_TIMEOUT_SECONDS,
            result_ttl=RESULT_TTL_SECONDS,
            retry=Retry(max=1),
            description=f"{what} of {name}",
        )
        for args, name in zip(arguments, names)
    ]
    logger.info("%d %s job(s) on queue %r; workers: python -m ls_backend.worker", len(jobs), what, queue_name)
    try:
        return _wait_for(jobs, names, what, progress)
    finally:
        for job in jobs:
            job.delete()  # also cancels a job not yet started (a failed run stops the others)


def _wait_for(jobs: list[Job], names: Sequence[str], what: str, progress: bool) -> list[Any]:
    results: dict[int, Any] = {}
    with tqdm(total=len(jobs), unit="recording", desc=f"{what} jobs", disable=not progress) as bar:
        while len(results) < len(jobs):
            for k, job in enumerate(jobs):
                if k in results:
                    continue
                try:
                    status = job.get_status(refresh=True)
                except InvalidJobOperation:  # Redis lost it (flushed, restarted without persistence)
                    raise QueuedJobError(f"{names[k]}: its {what} job is gone from Redis") from None
                if status == JobStatus.FINISHED:
                    results[k] = job.return_value()
                    bar.update()
                elif status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
                    raise QueuedJobError(f"{names[k]}: {what} failed on a worker ({_reason(job)})")
            if len(results) < len(jobs):
                time.sleep(POLL_SECONDS)
    return [results[k] for k in range(len(jobs))]


def _reason(job: Job) -> str:
    """The last line of a failed job's exception (what went wrong), or its status."""
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"job {job.get_status()}"
