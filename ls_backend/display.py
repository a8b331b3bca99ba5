"""``GET /display/<store>?window=...``: a task's page drawn from its window store, for tasks imported with
``--display-url`` (:mod:`converters.display`).

Label Studio's editor fetches the URL from the clinician's browser without credentials, so the route is outside the
backend's basic auth and checks the URL's signature instead (keyed by the same password); it answers any origin
(the editor runs on Label Studio's).
"""

from __future__ import annotations

import json

from flask import Flask, Response, request

from converters.display import DISPLAY_ROUTE, parse_display_request, signing_key
from converters.tasks import page_data

from .config import Settings
from .stores import StoreCache, TaskInputError, WindowRef

CORS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "private, max-age=3600"}


def register_display_route(app: Flask, settings: Settings, stores: StoreCache) -> None:
    """Add the display route to ``app`` (exempt it from basic auth with :func:`is_display_request`)."""
    key = signing_key(settings.basic_auth_pass if settings.auth_enabled else None)

    @app.get(f"{DISPLAY_ROUTE}<path:store>")
    def display(store: str) -> Response:
        try:
            asked = parse_display_request(store, request.args, key)
        except PermissionError as err:
            return _error(403, str(err))
        except ValueError as err:
            return _error(400, str(err))
        ref = WindowRef(asked.store, asked.window_id)
        try:
            window_store = stores.get(ref.store, asked.window_id)
            row = stores.row(ref, asked.window_id)
        except TaskInputError as err:
            return _error(404, str(err))
        layout = asked.layout(window_store.window_samples / window_store.sfreq)
        series = page_data(window_store, row, layout, asked.max_points)
        return Response(json.dumps(series, separators=(",", ":")), 200, CORS, mimetype="application/json")


def is_display_request(path: str) -> bool:
    return path.startswith(DISPLAY_ROUTE)


def _error(status: int, detail: str) -> Response:
    body = json.dumps({"error": "display", "detail": detail})
    return Response(body, status, CORS, mimetype="application/json")
