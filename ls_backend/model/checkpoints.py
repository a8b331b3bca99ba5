"""Checkpoints: atomic, self-describing, loaded with ``torch.load(weights_only=True)``.

A checkpoint is one ``.pt`` file holding only tensors and plain types: the format tag, the model's parameters
and metadata as JSON strings, and the network's ``state_dict``. Saving writes ``<name>.tmp``, fsyncs it, reads it
back, and only then renames it over the target (so a crash or a bad write never replaces a good checkpoint).
A truncated or foreign file raises :class:`CheckpointError` naming the file.

Metadata (free-form JSON) should hold at least: ``version``, ``parent_version``, ``labels_used``, ``metrics`` and
``preprocessing`` (the window store's parameters the model was trained on); ``software`` and ``saved_at`` are added.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from .estimator import SpikeDetector

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "spike-al-detector"  # the file format tag: unchanged, so older checkpoints load
CHECKPOINT_FORMAT_VERSION = 1


def _software_version() -> str:
    # from the installed distribution: ``ls_backend/__init__`` may be shadowed by a stale editable install
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spike-al")
    except PackageNotFoundError:
        return "unknown"


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used (missing, truncated, corrupt, or not ours)."""


def _payload(model: SpikeDetector, metadata: dict[str, Any]) -> dict[str, Any]:
    model._check_fitted()
    saved_at = time.strftime("%Y-%m-%dT%H:%M:%S")
    meta = dict(metadata) | {"software": f"spike-al {_software_version()}", "saved_at": saved_at}
    params = model.get_params()
    params.pop("device")  # where it trained is not part of the model: a loaded model runs on the CPU until told
    if not isinstance(params["dilation"], int):
        params["dilation"] = list(params["dilation"])
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "params_json": json.dumps(params),
        "metadata_json": json.dumps(meta, default=float),
        "n_times": int(model.n_times_),
        "logit_offset": float(getattr(model, "logit_offset_", 0.0)),
        "state_dict": {k: v.detach().cpu() for k, v in model.module_.state_dict().items()},
    }


def save_checkpoint(path: str | os.PathLike, model: SpikeDetector, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` and ``metadata`` to ``path`` atomically; a previous file there stays until the new one
    has been written completely and read back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(_payload(model, metadata or {}), fh)
            fh.flush()
            os.fsync(fh.fileno())
        load_checkpoint(tmp)  # verify before replacing anything
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("saved checkpoint %s", path)
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[SpikeDetector, dict[str, Any]]:
    """A fitted model and its metadata from ``path``; :class:`CheckpointError` if it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle errors, disallowed types: all mean "unusable"
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a spike-al model checkpoint")
    if payload.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('format_version')} is not supported")
    try:
        params = {"channel_pool": "max"} | json.loads(payload["params_json"])  # saved before channel_pool existed
        if isinstance(params.get("dilation"), list):
            params["dilation"] = tuple(params["dilation"])
        metadata = json.loads(payload["metadata_json"])
        model = SpikeDetector(**params)
        module = model.build_module()
        module.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: inconsistent checkpoint ({err})") from None
    module.eval()
    model.module_ = module
    model.n_times_ = int(payload["n_times"])
    model.logit_offset_ = float(payload.get("logit_offset", 0.0))
    model.history_ = []
    return model, metadata


def latest_valid_checkpoint(directory: str | os.PathLike, pattern: str = "*.pt") -> tuple[Path, SpikeDetector, dict]:
    """The newest loadable checkpoint in ``directory`` (by modification time), skipping corrupt ones with a
    warning: a bad latest file falls back to the previous good one."""
    candidates = sorted(Path(directory).glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            model, metadata = load_checkpoint(path)
        except CheckpointError as err:
            logger.warning("skipping %s", err)
            continue
        return path, model, metadata
    raise CheckpointError(f"{directory}: no usable checkpoint among {len(candidates)} file(s)")
