"""Versioned models per project in MODEL_DIR: checkpoints, the serving version, and their history.

Layout::

    MODEL_DIR/<project>/checkpoints/<version>.pt   (atomic, see ls_backend.model.checkpoints)
    MODEL_DIR/<project>/current.json               the version that serves (replaced atomically)
    MODEL_DIR/<project>/history.json               every promoted version's metadata, oldest first

A version is promoted only after its checkpoint is safely on disk, so a crash while training or saving leaves
the previous version serving. A corrupt serving checkpoint falls back to the newest loadable one.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from .jobs import project_key, write_json_atomic
from .model.checkpoints import CheckpointError, latest_valid_checkpoint, load_checkpoint, save_checkpoint
from .model.estimator import SpikeDetector

logger = logging.getLogger(__name__)


class ModelRegistry:
    """Find, load (cached by version) and promote the detectors of each project."""

    def __init__(self, model_dir: str | os.PathLike):
        self.model_dir = Path(model_dir)
        self._cache: dict[str, tuple[str, SpikeDetector, dict]] = {}
        self._lock = threading.Lock()

    def project_dir(self, project: object) -> Path:
        return self.model_dir / project_key(project)

    def current_version(self, project: object) -> str | None:
        """The serving version (a small file read: cheap enough for /setup)."""
        try:
            return json.loads((self.project_dir(project) / "current.json").read_text())["version"]
        except (FileNotFoundError, KeyError, json.JSONDecodeError):
            return None

    def load(self, project: object) -> tuple[SpikeDetector, dict] | None:
        """The serving detector and its metadata, or None before the first model of the project."""
        key = project_key(project)
        version = self.current_version(key)
        if version is None:
            return None
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == version:
                return cached[1], cached[2]
            directory = self.project_dir(key) / "checkpoints"
            try:
                detector, meta = load_checkpoint(directory / f"{version}.pt")
            except CheckpointError as err:
                logger.error("project %s: %s; serving the newest loadable checkpoint instead", key, err)
                _, detector, meta = latest_valid_checkpoint(directory)
            self._cache[key] = (version, detector, meta)
            return detector, meta

    def promote(self, project: object, detector: SpikeDetector, metadata: dict[str, Any]) -> str:
        """Save ``detector`` as the project's new serving version; return the version name."""
        key = project_key(project)
        parent = self.current_version(key)
        history = self.history(key)
        version = f"p{key}-v{len(history) + 1:04d}"
        meta = dict(metadata) | {"version": version, "parent_version": parent, "promoted_at": time.time()}
        save_checkpoint(self.project_dir(key) / "checkpoints" / f"{version}.pt", detector, meta)
        write_json_atomic(self.project_dir(key) / "history.json", {"versions": [*history, meta]})
        write_json_atomic(self.project_dir(key) / "current.json", {"version": version})
        logger.info("project %s: version %s now serves (parent %s)", key, version, parent)
        return version

    def restore(self, project: object, version: str | None) -> None:
        """Serve ``version`` again (None: no model yet), e.g. when a newer one's ranking could not be pushed."""
        key = project_key(project)
        path = self.project_dir(key) / "current.json"
        if version is None:
            path.unlink(missing_ok=True)
        else:
            write_json_atomic(path, {"version": version})
        logger.warning("project %s: version %s serves again", key, version)

    def history(self, project: object) -> list[dict]:
        try:
            return json.loads((self.project_dir(project) / "history.json").read_text())["versions"]
        except (FileNotFoundError, KeyError, json.JSONDecodeError):
            return []
