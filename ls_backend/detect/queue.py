"""Detection of one recording as a plain function of its inputs, run here or as an RQ job on the backend's workers.

:func:`detect_recording` takes only paths and numbers (a :class:`ModelSpec` names the model), so a worker on any
machine that mounts the window stores and the checkpoint at the same paths loads them itself. :func:`run_on_queue`
enqueues one job per recording on the detection queue that ``python -m ls_backend.worker`` listens to, waits for
them with a progress bar, and returns every recording's events or none (a job that fails twice stops the run).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from tqdm.auto import tqdm

from converters.windows import WindowStore

from ..model.checkpoints import load_checkpoint
from ..model.estimator import SpikeDetector
from ..worker import DETECT_QUEUE_NAME
from .events import Event
from .scoring import DenseScorer, ModelScorer, TransientScorer, detect_store

logger = logging.getLogger(__name__)

JOB_TIMEOUT_SECONDS = 6 * 3600  # one 3-day recording on a slow worker; RQ kills a job past it
RESULT_TTL_SECONDS = 7 * 24 * 3600  # events wait this long for the command that asked for them
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class ModelSpec:
    """The model a detection uses, as a worker can load it: a checkpoint file, or (``checkpoint`` None) the
    classical transient detector fitted to each recording (cold start). ``version`` names it in the events."""

    checkpoint: str | None
    version: str

    @property
    def is_cold_start(self) -> bool:
        return self.checkpoint is None


def load_model(checkpoint: str) -> tuple[SpikeDetector, dict]:
    """The model in ``checkpoint`` and its metadata, loaded once per process and file version (a worker keeps it
    between recordings); :class:`~ls_backend.model.checkpoints.CheckpointError` when it cannot be used."""
    path = Path(checkpoint)
    return _load_checkpoint(checkpoint, path.stat().st_mtime_ns if path.is_file() else 0)


@lru_cache(maxsize=4)
def _load_checkpoint(checkpoint: str, mtime_ns: int) -> tuple[SpikeDetector, dict]:
    return load_checkpoint(checkpoint)


def scorer_for(spec: ModelSpec, store: WindowStore) -> DenseScorer:
    """The dense scorer of ``spec`` for ``store`` (the cold-start detector is fitted to each recording)."""
    if spec.checkpoint is None:
        return TransientScorer.for_store(store)
    return ModelScorer(load_model(spec.checkpoint)[0], spec.version)


def detect_recording(
    store_path: str, model: ModelSpec, threshold: float, block_windows: int = 256, progress: bool = False
) -> list[Event]:
    """Every spike event of one window store (the RQ job; also the local run's step)."""
    with WindowStore(store_path) as store:
        return detect_store(store, scorer_for(model, store), threshold, block_windows, progress=progress)


class QueuedDetectionError(RuntimeError):
    """A recording's job failed twice (or was lost): names the store and the reason."""


def run_on_queue(
    redis_url: str,
    stores: list[Path],
    model: ModelSpec,
    threshold: float,
    block_windows: int = 256,
    queue_name: str = DETECT_QUEUE_NAME,
    progress: bool = True,
) -> list[list[Event]]:
    """The events of each store (in order), each detected by an RQ job; a failed job is retried once.

    On a second failure (or Ctrl-C) the jobs not yet finished are cancelled and :class:`QueuedDetectionError`
    (or the interrupt) is raised: the caller writes nothing unless every recording succeeded.
    """
    redis = Redis.from_url(redis_url)
    queue = Queue(queue_name, connection=redis)
    jobs = [
        queue.enqueue(
            detect_recording,
            str(Path(store).resolve()),
            model,
            threshold,
            block_windows,
            job_timeout=JOB_TIMEOUT_SECONDS,
            result_ttl=RESULT_TTL_SECONDS,
            retry=Retry(max=1),
            description=f"detect spikes in {store}",
        )
        for store in stores
    ]
    logger.info("%d detection job(s) on queue %r; workers: python -m ls_backend.worker", len(jobs), queue_name)
    try:
        return _wait_for(jobs, stores, progress)
    finally:
        for job in jobs:
            job.delete()  # also cancels a job not yet started (a failed run stops the others)


def _wait_for(jobs: list[Job], stores: list[Path], progress: bool) -> list[list[Event]]:
    """Each job's events once all finished; :class:`QueuedDetectionError` at the first job that failed twice."""
    results: dict[int, list[Event]] = {}
    with tqdm(total=len(jobs), unit="recording", desc="detection jobs", disable=not progress) as bar:
        while len(results) < len(jobs):
            for k, job in enumerate(jobs):
                if k in results:
                    continue
                try:
                    status = job.get_status(refresh=True)
                except InvalidJobOperation:  # Redis lost it (flushed, restarted without persistence)
                    raise QueuedDetectionError(f"{stores[k]}: its detection job is gone from Redis") from None
                if status == JobStatus.FINISHED:
                    results[k] = job.return_value() or []
                    bar.update()
                elif status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
                    raise QueuedDetectionError(f"{stores[k]}: detection failed on a worker ({_reason(job)})")
            if len(results) < len(jobs):
                time.sleep(POLL_SECONDS)
    return [results[k] for k in range(len(jobs))]


def _reason(job: Job) -> str:
    """The last line of a failed job's exception (what went wrong), or its status."""
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"job {job.get_status()}"
