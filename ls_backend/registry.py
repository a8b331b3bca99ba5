"""Versioned models per project in MODEL_DIR: checkpoints, the serving version, and their history.

The files (``checkpoints/<version>.pt``, ``current.json``, ``history.json``) are described in
:mod:`ls_backend.project_state`; ``encoder.pt`` is the project's pretrained encoder, where one was pretrained
(:mod:`ls_backend.pretraining`). A version is promoted only after its checkpoint is safely on disk, so a crash while
training or saving leaves the previous version serving. A corrupt serving checkpoint falls back to the newest loadable
one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .loop import Plan
from .model.checkpoints import CheckpointError, latest_valid_checkpoint, load_checkpoint, save_checkpoint
from .model.estimator import SpikeDetector
from .model.pretrain import PretrainedEncoder, load_encoder, save_encoder
from .project_state import ProjectState, model_version_name, read_json, write_json_atomic

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.pt"


class ModelRegistry:
    """Find, load (cached by version) and promote the models of each project."""

    def __init__(self, model_dir: str | os.PathLike):
        self.model_dir = Path(model_dir)
        self._cache: dict[str, tuple[str, SpikeDetector, dict]] = {}
        self._lock = threading.Lock()

    def state(self, project: object) -> ProjectState:
        return ProjectState.of(self.model_dir, project)

    def current_version(self, project: object) -> str | None:
        """The serving version (a small file read: cheap enough for /setup)."""
        return (read_json(self.state(project).current) or {}).get("version")

    def load(self, project: object) -> tuple[SpikeDetector, dict] | None:
        """The serving model and its metadata, or None before the first model of the project."""
        state = self.state(project)
        version = self.current_version(state.key)
        if version is None:
            return None
        with self._lock:
            cached = self._cache.get(state.key)
            if cached is not None and cached[0] == version:
                return cached[1], cached[2]
            try:
                model, meta = load_checkpoint(state.checkpoint(version))
            except CheckpointError as err:
                logger.error("project %s: %s; serving the newest loadable checkpoint instead", state.key, err)
                _, model, meta = latest_valid_checkpoint(state.checkpoints)
            self._cache[state.key] = (version, model, meta)
            return model, meta

    def promote(self, project: object, model: SpikeDetector, metadata: dict[str, Any]) -> str:
        """Save ``model`` as the project's new serving version; return the version name."""
        state = self.state(project)
        parent = self.current_version(state.key)
        history = self.history(state.key)
        version = model_version_name(state.key, len(history) + 1)
        meta = dict(metadata) | {"version": version, "parent_version": parent, "promoted_at": time.time()}
        save_checkpoint(state.checkpoint(version), model, meta)
        write_json_atomic(state.history, {"versions": [*history, meta]})
        write_json_atomic(state.current, {"version": version})
        logger.info("project %s: version %s now serves (parent %s)", state.key, version, parent)
        return version

    def restore(self, project: object, version: str | None) -> None:
        """Serve ``version`` again (None: no model yet), e.g. when a newer one's ranking could not be pushed."""
        state = self.state(project)
        if version is None:
            state.current.unlink(missing_ok=True)
        else:
            write_json_atomic(state.current, {"version": version})
        logger.warning("project %s: version %s serves again", state.key, version)

    def history(self, project: object) -> list[dict]:
        return (read_json(self.state(project).history) or {}).get("versions") or []

    def encoder_path(self, project: object) -> Path:
        return self.state(project).dir / ENCODER_FILE

    def save_encoder(self, project: object, encoder: PretrainedEncoder) -> Path:
        """Keep ``encoder`` as the project's pretrained encoder (atomically replacing any earlier one)."""
        return save_encoder(self.encoder_path(project), encoder)

    def encoder(self, project: object, model_params: Mapping[str, Any]) -> PretrainedEncoder | None:
        """The project's pretrained encoder when it has one that fits a model with ``model_params`` (an unreadable
        or mismatched one is logged and ignored: the model then starts from a random initialisation)."""
        path = self.encoder_path(project)
        if not path.exists():
            return None
        try:
            encoder = load_encoder(path)
        except ValueError as err:
            logger.warning("project %s: %s; training without it", self.state(project).key, err)
            return None
        if not encoder.fits(model_params):
            logger.warning("project %s: %s fits another architecture; ignored", self.state(project).key, path)
            return None
        return encoder

    def with_encoder(self, project: object, plan: Plan) -> Plan:
        """``plan`` with the project's pretrained encoder, when it has one that fits ``plan.model``: a project's
        first model then starts from it."""
        encoder = self.encoder(project, plan.model)
        return plan if encoder is None else replace(plan, encoder=encoder.state)
