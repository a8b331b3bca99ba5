"""One project's state in ``MODEL_DIR/<project>/``: file names, atomic JSON writes, and version names.

Layout (every JSON file is replaced atomically: a reader sees the old file or the new one)::

    checkpoints/<version>.pt   each promoted model (ls_backend.registry)
    current.json               {"version"}: the model that serves
    history.json               {"versions": [...]}: every promoted model's metadata, oldest first
    ranking.json               the live ranking: {"version", "previous_version", "windows": {window_id: [score,
                               cluster]}} (scores of the last pushed ranking, which /predict answers), "heads":
                               {version: [task ids given a prediction in Label Studio]} of both versions}
    last_run.json              the last retraining run (result, seconds per stage)
    task_index.json            {"tasks": {task id: {"window_id", "store"}}}: which window each task shows
    retrain.json               the queued retraining (ls_backend.jobs), with .marker.lock and .run.lock
    ranking_due                present while a retraining is on its way to a live ranking (ls_backend.retrain)
    stale_rankings.json        {"versions": [...]}: rankings whose predictions are still to be deleted
                               (ls_backend.cleanup)
    budget*.json               the label budget, its status and the budget-spent mark (ls_backend.budget)

Versions: a promoted model is ``p<project>-v0001``, ``p<project>-v0002`` ...; a new ranking by a kept model adds
``-r2``, ``-r3`` ...; a ranking pushed once the label budget is spent ends in ``-budget-spent``; before any model the
ranking is ``cold-start``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

COLD_START_VERSION = "cold-start"
SPENT_SUFFIX = "-budget-spent"
_PROJECT = re.compile(r"^\d{1,12}$")


def project_key(value: object) -> str:
    """The project's id as a safe folder name: Label Studio sends ``"12.1700000000"`` or ``12``."""
    text = str(value).split(".", 1)[0].strip()
    if not _PROJECT.match(text):
        raise ValueError(f"project must be a Label Studio project id, got {value!r}")
    return text


def is_project_key(name: str) -> bool:
    return bool(_PROJECT.match(name))


def project_keys(model_dir: Path) -> list[str]:
    """The projects with a folder in ``model_dir``, sorted."""
    return sorted(p.name for p in Path(model_dir).glob("[0-9]*") if p.is_dir() and is_project_key(p.name))


def write_json_atomic(path: Path, content: dict) -> None:
    """Write then rename: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(content))
    os.replace(tmp, path)


@contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[None]:
    """An exclusive lock on ``path`` (created) between processes and threads; BlockingIOError when not ``blocking``
    and held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None when it is missing, or unreadable or not an object (logged, naming it)."""
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        logger.warning("%s is unreadable (%s): ignored", path, err)
        return None
    if not isinstance(content, dict):
        logger.warning("%s holds a %s, not a JSON object: ignored", path, type(content).__name__)
        return None
    return content


# -- version names -----------------------------------------------------------------------------------------


def model_version_name(key: str, number: int) -> str:
    """The version of the project's ``number``-th promoted model: ``p3-v0002``."""
    return f"p{key}-v{number:04d}"


def rerank_version(model_version: str, live: str | None) -> str:
    """The version of a new ranking by the serving model: ``p3-v0002``, then ``p3-v0002-r2``, ``p3-v0002-r3`` ..."""
    live = (live or "").removesuffix(SPENT_SUFFIX)
    if live == model_version:
        return f"{model_version}-r2"
    found = re.fullmatch(re.escape(model_version) + r"-r(\d+)", live)
    return f"{model_version}-r{int(found.group(1)) + 1}" if found else model_version


def is_ranking_of(ranking_version: str, model_version: str) -> bool:
    """Whether a ranking version (``p3-v0002-r2-budget-spent``) is one of the model ``model_version``'s."""
    return ranking_version == model_version or ranking_version.startswith(model_version + "-")


# -- one project's folder ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectState:
    """The files of one project in ``MODEL_DIR/<project>/`` (see the module docstring)."""

    model_dir: Path
    key: str

    @classmethod
    def of(cls, model_dir: str | os.PathLike, project: object) -> ProjectState:
        """The state of ``project`` (a Label Studio project id; anything else raises ValueError)."""
        return cls(Path(model_dir), project_key(project))

    @property
    def dir(self) -> Path:
        return self.model_dir / self.key

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def current(self) -> Path:
        return self.dir / "current.json"

    @property
    def history(self) -> Path:
        return self.dir / "history.json"

    @property
    def ranking(self) -> Path:
        return self.dir / "ranking.json"

    @property
    def last_run(self) -> Path:
        return self.dir / "last_run.json"

    @property
    def task_index(self) -> Path:
        return self.dir / "task_index.json"

    @property
    def retrain_marker(self) -> Path:
        return self.dir / "retrain.json"

    @property
    def stale_rankings(self) -> Path:
        return self.dir / "stale_rankings.json"

    @property
    def ranking_due(self) -> Path:
        return self.dir / "ranking_due"

    def ranking_due_since(self) -> float:
        """When the retraining now on its way to a live ranking started (0.0 when none is)."""
        try:
            return self.ranking_due.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def lock(self, name: str) -> Path:
        """The lock file ``name`` (``marker``, ``run`` of the retraining queue, ``stale``)."""
        return self.dir / f".{name}.lock"

    def checkpoint(self, version: str) -> Path:
        return self.checkpoints / f"{version}.pt"

    def owns_version(self, version: str | None) -> bool:
        """Whether predictions of ``version`` were made for this project (cold start or one of its models)."""
        return version is not None and (version == COLD_START_VERSION or version.startswith(f"p{self.key}-v"))

    def live_ranking(self) -> dict:
        """The last pushed ranking (``version``, ``previous_version``, ``windows``); {} before the first."""
        return read_json(self.ranking) or {}

    def write_ranking(
        self,
        version: str,
        previous_version: str | None,
        windows: dict[str, list],
        heads: dict[str, list[int] | None] | None = None,
    ) -> None:
        """``heads``: the tasks given a prediction in Label Studio, per version (the live one and the previous)."""
        ranking = {"version": version, "previous_version": previous_version, "windows": windows}
        write_json_atomic(self.ranking, ranking | ({"heads": heads} if heads is not None else {}))
