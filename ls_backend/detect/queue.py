"""Detection of one recording as a plain function of its inputs, run here or as an RQ job on the backend's workers.

:func:`detect_recording` takes only paths and numbers (a :class:`ModelSpec` names the model), so a worker on any
machine that mounts the window stores and the checkpoint at the same paths loads them itself. :func:`run_on_queue`
enqueues one job per recording on the detection queue that ``python -m ls_backend.worker`` listens to, waits for
them with a progress bar, and returns every recording's events or none (:mod:`converters.queued`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from converters.queued import QueuedJobError, run_jobs
from converters.windows import WindowStore

from ..model.checkpoints import load_checkpoint
from ..model.estimator import SpikeDetector
from ..worker import DETECT_QUEUE_NAME
from .events import Event
from .scoring import DenseScorer, ModelScorer, TransientScorer, detect_store

logger = logging.getLogger(__name__)


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


QueuedDetectionError = QueuedJobError  # a recording's detection job failed twice (or was lost)


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
    arguments = [(str(Path(store).resolve()), model, threshold, block_windows) for store in stores]
    events = run_jobs(redis_url, queue_name, detect_recording, arguments, [str(s) for s in stores], "detection",
                      progress)  # fmt: skip
    return [found or [] for found in events]
