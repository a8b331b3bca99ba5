"""The Label Studio ML backend HTTP protocol (Flask 3): /health /setup /predict /webhook /metrics /versions, and
the pages it serves to people (/report, /detections) and to the labeling editor (/display).

Requests never train and never load a model from scratch inside /health or /setup: state lives in MODEL_DIR and
the window stores, and the engine caches what it loaded per project. See docs/label-studio.md for what the
server sends.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException

from .budget.page import register_report_page
from .config import Settings
from .detect.report import register_detections_page
from .display import is_display_request, register_display_route
from .jobs import RetrainQueue, rq_dispatch
from .project_state import project_key
from .review.feedback import handle_review_webhook
from .stores import StoreCache, TaskInputError, WindowRef, Windows

logger = logging.getLogger(__name__)

RETRAIN_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "START_TRAINING"}


class Engine(Protocol):
    """What the HTTP layer needs from the model side."""

    def model_version(self, project: str) -> str: ...

    def predict(self, project: str, windows: Windows, task_ids: list[object]) -> list[dict]:
        """One prediction (``result``, ``score``, ``model_version``, optional ``cluster``) per window (shown by
        the task ``task_ids[k]``)."""
        ...

    def versions(self, project: str | None = None) -> list[dict]: ...

    def has_ranking(self, project: str) -> bool:
        """Whether a ranking was pushed for the project (else /setup queues the cold-start ranking)."""
        ...


Job = Callable[[str], object]  # the retraining of one project (see ls_backend.retrain.retraining_job)


def create_app(settings: Settings, engine: Engine, queue: RetrainQueue | None = None) -> Flask:
    """The Flask application; ``queue`` receives retraining requests from webhooks."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_request_mb * 1024 * 1024)
    stores = StoreCache(settings.window_store_dir)
    stats: Counter[str] = Counter()
    started = time.time()

    @app.before_request
    def authenticate() -> Response | None:
        if not settings.auth_enabled or is_display_request(request.path):  # display URLs carry a signature
            return None
        if request.path == "/webhook" and settings.webhook_secret:
            given = request.headers.get("X-Webhook-Secret", "")
            if hmac.compare_digest(given, settings.webhook_secret):
                return None
        auth = request.authorization
        if (
            auth
            and hmac.compare_digest(auth.username or "", settings.basic_auth_user)
            and hmac.compare_digest(auth.password or "", settings.basic_auth_pass)
        ):
            return None
        stats["unauthorized"] += 1
        return Response("authentication required", 401, {"WWW-Authenticate": 'Basic realm="spike backend"'})

    @app.errorhandler(Exception)
    def on_error(err: Exception) -> tuple[Response, int]:
        if isinstance(err, HTTPException):
            return jsonify(error=err.name, detail=err.description), err.code or 500
        if isinstance(err, ValueError):  # bad values in a request (e.g. a project id that is not one)
            return jsonify(error="bad request", detail=str(err)), 400
        logger.exception("unhandled error on %s", request.path)
        return jsonify(error="internal error", detail="see the backend's log"), 500

    @app.get("/health")
    @app.get("/")
    def health() -> Response:
        # "UP" while /predict works (Label Studio connects a backend that is UP); "problems" names what does not
        return jsonify(
            status="UP",
            model_class="SpikeDetector",
            uptime_seconds=round(time.time() - started),
            problems=settings.problems(),
        )

    @app.post("/setup")
    def setup() -> Response:
        body = _json_body()
        project = project_key(body.get("project", ""))
        if queue is not None and not engine.has_ranking(project) and project not in queue.pending():
            queue.request(project, "SETUP")  # the cold-start ranking, in the background
        return jsonify(model_version=engine.model_version(project))

    @app.post("/predict")
    def predict() -> Response | tuple[Response, int]:
        body = _json_body()
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            return jsonify(error="bad request", detail="'tasks' must be a list of tasks"), 400
        project = project_key(body.get("project", ""))
        results = _predict_tasks(project, tasks)
        stats["predicted_tasks"] += len(tasks)
        return jsonify(results=results)

    def _predict_tasks(project: str, tasks: list[dict]) -> list[dict]:
        refs, good = [], []
        empty = {"result": [], "score": 1.0, "model_version": engine.model_version(project)}
        results: list[dict] = [empty] * len(tasks)
        for k, task in enumerate(tasks):
            try:
                ref = WindowRef.of_task(task)
                stores.row(ref, task.get("id"))  # a task whose window cannot be read gets the empty prediction
            except TaskInputError as err:
                stats["task_errors"] += 1
                logger.warning("predict: %s", err)
                continue
            refs.append(ref)
            good.append(k)
        if good:
            task_ids = [tasks[k].get("id") for k in good]
            for k, prediction in zip(good, engine.predict(project, stores.read(refs, task_ids), task_ids)):
                results[k] = prediction
        return results

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        body = _json_body()
        action = body.get("action")
        project = (body.get("project") or {}).get("id") if isinstance(body.get("project"), dict) else None
        try:  # a cluster review project's answer: stored, and its window project retrains
            window = handle_review_webhook(settings.model_dir, body)
        except LookupError:
            pass
        else:
            if window is None:
                stats["ignored_webhooks"] += 1
                return jsonify(status="ignored", action=action), 200
            stats["review_answers"] += 1
            if queue is None:
                return jsonify(status="stored", action=action, project=window), 200
            queue.request(window, f"REVIEW_{action}")
            return jsonify(status="queued", action=action, project=window), 201
        if action in RETRAIN_ACTIONS and queue is not None and project is not None:
            queue.request(project, action)
            stats["retrain_requests"] += 1
            return jsonify(status="queued", action=action), 201
        stats["ignored_webhooks"] += 1
        return jsonify(status="ignored", action=action), 200

    @app.get("/metrics")
    def metrics() -> Response:
        lines = [f"spike_backend_{name} {value}" for name, value in sorted(stats.items())]
        if queue is not None:
            lines += [f"spike_backend_retrain_{name} {value}" for name, value in sorted(queue.counts.items())]
            lines.append(f"spike_backend_retrain_pending {len(queue.pending())}")
        lines.append(f"spike_backend_uptime_seconds {time.time() - started:.0f}")
        return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")

    @app.get("/versions")
    def versions() -> Response:
        project = request.args.get("project")
        return jsonify(versions=engine.versions(project_key(project) if project else None))

    register_report_page(app, settings)  # /report/<project>: the label budget report (ls_backend.budget)
    register_detections_page(app, settings)  # /detections/<project>: spikes found (ls_backend.detect)
    register_display_route(app, settings, stores)  # /display/<store>: a task's traces (import --display-url)
    return app


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def make_server_app(engine_factory: Callable[[Settings], Engine], job_factory: Callable[[Settings], Job]) -> Flask:
    """Settings from the environment, the retraining worker started (or RQ), the app built (gunicorn's entry).

    ``engine_factory`` makes what answers /predict, ``job_factory`` the retraining job the queue runs."""
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for problem in settings.problems():
        logger.error("%s", problem)
    engine = engine_factory(settings)
    dispatch = rq_dispatch(settings.redis_url)  # with REDIS_URL: `python -m ls_backend.worker` processes train
    job = job_factory(settings)
    queue = RetrainQueue(settings.model_dir, job, settings.retrain_debounce_seconds, dispatch=dispatch)
    if dispatch is None:
        queue.start()
    return create_app(settings, engine, queue)
