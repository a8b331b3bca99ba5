"""The pretraining job: a project's encoder pretrained on the patient's unlabeled windows, kept where retraining
finds it (``MODEL_DIR/<project>/encoder.pt``, see :meth:`ModelRegistry.with_encoder`).

On by default: on the synthetic patients, models that started from a pretrained encoder learned faster from the
first labels, beyond the seed noise pooled over the patients (``docs/benchmarks.md``, "Eight seeds, and consistency
training", and with the smooth maximum over channels "Pooling the channels"). With ``PRETRAIN_AFTER_IMPORT``
(default 1) the backend starts it after a project's cold-start ranking (:func:`start_after_cold_start`); with 0, or
for a project imported before, run it with ``python -m ls_backend.pretraining PROJECT`` (settings from the
environment), or ``--queue`` to hand it to the RQ workers (``python -m ls_backend.worker``). The windows are a
bounded random draw from every window store the project's tasks come from (:mod:`ls_backend.model.pretrain`)."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from converters import studio

from .config import Settings
from .model.pretrain import PretrainedEncoder, PretrainParams, pretrain_from_stores
from .project_state import file_lock, project_key
from .registry import ModelRegistry
from .retrain import PLAN
from .stores import StoreCache, WindowRef
from .task_index import cached_task_index

logger = logging.getLogger(__name__)

AFTER_IMPORT = PretrainParams()  # how the pretraining after a cold start runs
JOB_TIMEOUT_SECONDS = 3600  # minutes on 2 cores (benchmarks/bench_pretrain.py); RQ kills a job past it


def project_stores(index: dict[int, WindowRef]) -> list[str]:
    """The window stores (keys under WINDOW_STORE_DIR) the project's tasks come from."""
    return sorted({ref.store for ref in index.values()})


def pretrain_project(
    settings: Settings,
    project: object,
    client: Any = None,
    registry: ModelRegistry | None = None,
    stores: Sequence[str] | None = None,
    params: PretrainParams | None = None,
    seed: int = 0,
) -> PretrainedEncoder:
    """Pretrain the encoder of ``project``'s model (the retraining's architecture) on windows of ``stores`` (default:
    every store its tasks come from, from Label Studio) and keep it in the registry."""
    registry = registry or ModelRegistry(settings.model_dir)
    state = registry.state(project)
    if stores is None:
        client = client or studio.connect(settings.label_studio_url, settings.label_studio_api_key)
        stores = project_stores(cached_task_index(client, state))
    if not stores:
        raise ValueError(f"project {state.key}: no task with a window store to pretrain on (import a recording first)")
    cache = StoreCache(settings.window_store_dir)
    encoder = pretrain_from_stores([cache.get(key) for key in stores], PLAN.model, params or PretrainParams(), seed)
    path = registry.save_encoder(state.key, encoder)
    logger.info("project %s: pretrained on %d store(s) in %.0f s: %s", state.key, len(stores), encoder.seconds, path)
    return encoder


def pretrain_if_missing(settings: Settings, key: str, stores: Sequence[str] | None = None) -> bool:
    """Pretrain ``key``'s encoder unless it has one or another process is pretraining it (a lock per project);
    a failure is logged, never raised (retraining goes on without an encoder). True when it pretrained."""
    registry = ModelRegistry(settings.model_dir)
    state = registry.state(key)
    try:
        with file_lock(state.lock("pretrain"), blocking=False):
            if registry.encoder_path(key).exists():
                return False
            pretrain_project(settings, key, registry=registry, stores=stores, params=AFTER_IMPORT)
            return True
    except BlockingIOError:
        logger.info("project %s: its encoder is being pretrained elsewhere", key)
    except Exception:
        logger.exception("project %s: pretraining in the background failed; models start without an encoder", key)
    return False


def start_after_cold_start(settings: Settings, key: str, stores: Sequence[str]) -> threading.Thread | None:
    """With ``PRETRAIN_AFTER_IMPORT``, pretrain the encoder of a project that just got its cold-start ranking, in
    the background, unless it has one: by the RQ workers when ``REDIS_URL`` is set, else in a thread of this process
    (returned). The first model trained after it is there starts from it."""
    if not settings.pretrain_after_import or not stores or ModelRegistry(settings.model_dir).encoder_path(key).exists():
        return None
    if settings.redis_url:
        enqueue(settings, key, run_pretraining_if_missing)
        return None
    thread = threading.Thread(
        target=pretrain_if_missing, args=(settings, key, list(stores)), name=f"pretrain-{key}", daemon=True
    )
    thread.start()
    logger.info("project %s: pretraining its encoder in the background on %d store(s)", key, len(stores))
    return thread


def run_pretraining_if_missing(key: str) -> str:
    """The RQ job after a cold start: :func:`pretrain_if_missing` with the settings of the worker's environment."""
    return "pretrained" if pretrain_if_missing(Settings.from_env(), key) else "not pretrained"


def run_pretraining(key: str) -> str:
    """The RQ job: pretrain one project's encoder with the settings of the worker's environment."""
    encoder = pretrain_project(Settings.from_env(), key)
    return f"pretrained in {encoder.seconds:.0f} s"


def enqueue(settings: Settings, project: object, job: Callable[[str], str] = run_pretraining) -> None:
    """Hand the pretraining of ``project`` (``job``) to the RQ workers (the retraining queue)."""
    if not settings.redis_url:
        raise ValueError("--queue needs REDIS_URL: the Redis the backend and its workers use")
    from redis import Redis
    from rq import Queue

    from .worker import QUEUE_NAME

    queue = Queue(QUEUE_NAME, connection=Redis.from_url(settings.redis_url))
    key = project_key(project)
    queue.enqueue(job, key, job_timeout=JOB_TIMEOUT_SECONDS, description=f"pretrain project {key}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ls_backend.pretraining", description=__doc__.split("\n\n")[0])
    parser.add_argument("project", help="Label Studio project id")
    parser.add_argument("--steps", type=int, default=PretrainParams().steps, help="optimizer steps")
    parser.add_argument("--queue", action="store_true", help="enqueue it for the RQ workers instead of running it")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if args.queue:
            enqueue(settings, args.project)
        else:
            pretrain_project(settings, args.project, params=PretrainParams(steps=args.steps))
    except ValueError as err:
        print(f"python -m ls_backend.pretraining: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # RQ refuses jobs of __main__: the importable module's functions are enqueued
    from ls_backend.pretraining import main as module_main

    sys.exit(module_main())
