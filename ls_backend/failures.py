"""A retraining that fails, said where people look: ``MODEL_DIR/<project>/retrain_failure.json`` (since when, how
often, why in one line), shown on ``/report/<project>`` and in the Label Studio project's description until a
retraining succeeds again. The queue retries the job meanwhile (see :mod:`ls_backend.jobs`)."""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .project_state import write_json_atomic

FILE = "retrain_failure.json"
MAX_REASON = 200  # characters of the error kept: one line a person reads


@dataclass(frozen=True)
class RetrainFailure:
    since: float  # the first failure since the last success (Unix time)
    last: float
    attempts: int
    reason: str  # "ExceptionType: first line of its message"

    def line(self) -> str:
        """One line for people: since when, how often, why."""
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return f"The model could not be updated since {_utc(self.since)} ({tries}, retried): {self.reason}"


def reason_of(err: BaseException) -> str:
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = f"{type(err).__name__}: {message}" if message else type(err).__name__
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def record_failure(project_dir: Path, err: BaseException, now: float | None = None) -> RetrainFailure:
    """Count one more failure (the first one's time is kept)."""
    now = time.time() if now is None else now
    before = load_failure(project_dir)
    failure = RetrainFailure(
        before.since if before else now, now, (before.attempts if before else 0) + 1, reason_of(err)
    )
    write_json_atomic(project_dir / FILE, asdict(failure))
    return failure


def load_failure(project_dir: Path) -> RetrainFailure | None:
    try:
        return RetrainFailure(**json.loads((project_dir / FILE).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def clear_failure(project_dir: Path) -> RetrainFailure | None:
    """Forget the failures (a retraining succeeded); the failure that was recorded, if any."""
    before = load_failure(project_dir)
    (project_dir / FILE).unlink(missing_ok=True)
    return before


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
