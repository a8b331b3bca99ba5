"""The Label Studio layer of the importer: connect, find or create the project, import tasks idempotently.

Everything goes through label-studio-sdk (``LabelStudio``) except ``GET /health``, which the SDK has no call for
(plain httpx, the SDK's own HTTP library).

Idempotent imports rest on the ``window_id`` of each task (a string in ``task["data"]``).
:func:`import_tasks` also copies it into the task's ``meta`` (``meta["window_id"]``), because the tasks list
API can return ``meta`` without ``data`` (``include=id,meta``): :func:`existing_window_ids` then reads a
project's window ids without downloading the time series that every task carries.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.pagination import SyncPager
from label_studio_sdk.core.request_options import RequestOptions
from label_studio_sdk.projects.client_ext import ProjectExt
from label_studio_sdk.types.all_roles_project_list import AllRolesProjectList
from tqdm.auto import tqdm

from .labelconfig import config_channels

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://localhost:8080"
WINDOW_ID_KEY = "window_id"
STORE_KEY = "store"
WEBHOOK_SECRET_HEADER = "X-Webhook-Secret"  # what the ML backend accepts on /webhook (see ls_backend.config)
META_KEYS = (WINDOW_ID_KEY, STORE_KEY)  # copied from each task's data into its meta: readable without the data
#: Project ordering for active learning: unlabeled tasks with the lowest prediction score first.
SAMPLING = "Uncertainty sampling"

#: Data Manager columns hidden from the default view: the display series and the bulky or internal ones.
HIDDEN_COLUMNS = (
    "data.ts", "data.channels", "data.store", "data.title", "data.duration_seconds",
    "inner_id", "annotations_ids", "predictions_model_versions", "file_upload", "storage_filename",
    "created_at", "updated_at", "updated_by", "avg_lead_time", "draft_exists", "annotations_results",
    "predictions_results",
)  # fmt: skip

_ID_PAGE_SIZE = 1000  # tasks per page when only id + meta are read (40 bytes a task; ~20 s of server time)
_DATA_PAGE_SIZE = 100  # tasks per page when the data must be read (each carries a time series)
_LIST_TIMEOUT_SECONDS = 300
_DELETE_CHUNK = 1000
_IMPORT_TIMEOUT_SECONDS = 600  # also for deleting tasks and projects, which can be large
_MESSAGE_CHARS = 400
_NO_RETRY: RequestOptions = {"max_retries": 0}


class StudioError(RuntimeError):
    """Label Studio refused or failed a request; the message names the server and what was expected."""


def _base_url(client: LabelStudio) -> str:
    return client._client_wrapper.get_base_url().rstrip("/")


def _one_line(text: str) -> str:
    text = re.sub(r"<[^>]+>", "", text)  # the server's messages may carry HTML links
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


def _server_message(exc: BaseException) -> str:
    """The useful part of an SDK/HTTP error, on one line (the server echoes whole tasks: cut them)."""
    if not isinstance(exc, ApiError):
        return _one_line(f"{type(exc).__name__}: {exc}")
    body = exc.body
    if isinstance(body, str) and re.search(r"<(!doctype|html)", body[:1000], re.IGNORECASE):
        return f"HTTP {exc.status_code} with an HTML page instead of an API answer (is the URL Label Studio's root?)"
    if not isinstance(body, dict):
        return _one_line(f"HTTP {exc.status_code}: {body}")
    parts: list[str] = []
    errors = body.get("validation_errors")
    if isinstance(errors, dict):
        for field, value in errors.items():
            values = value if isinstance(value, list) else [value]
            texts = [str(v).split(" :: ")[0] for v in values if v not in ({}, [], "", None)]
            if texts:
                parts.append("; ".join(texts) if field == "non_field_errors" else f"{field}: {'; '.join(texts)}")
    text = " ".join(parts) or str(body.get("detail") or body)
    return _one_line(f"HTTP {exc.status_code}: {text}")


def require_id(item_id: int | None, what: str) -> int:
    """The id the server sent for ``what`` (the SDK types every field optional); a StudioError when missing."""
    if item_id is None:
        raise StudioError(f"Label Studio sent {what} without an id")
    return item_id


@contextmanager
def _api(client: LabelStudio, what: str) -> Iterator[None]:
    """Turn SDK/HTTP failures of ``what`` into a StudioError naming the server."""
    try:
        yield
    except (ApiError, httpx.HTTPError) as exc:
        raise StudioError(f"Label Studio at {_base_url(client)}: {what} failed: {_server_message(exc)}") from exc


def connect(url: str | None = None, api_key: str | None = None) -> LabelStudio:
    """Connect to Label Studio and check that it answers and accepts the API key.

    ``url`` defaults to env ``LABEL_STUDIO_URL`` (else ``http://localhost:8080``), ``api_key`` to env
    ``LABEL_STUDIO_API_KEY`` (Account & Settings > Access Token in Label Studio).
    """
    url = (url or os.environ.get("LABEL_STUDIO_URL") or DEFAULT_URL).rstrip("/")
    api_key = api_key or os.environ.get("LABEL_STUDIO_API_KEY")
    if not api_key:
        raise StudioError(
            f"no API key for Label Studio at {url}: set LABEL_STUDIO_API_KEY "
            "(Label Studio > Account & Settings > Access Token)"
        )
    try:  # the SDK has no call for /health, which needs no token
        response = httpx.get(f"{url}/health", timeout=10.0, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise StudioError(f"Label Studio at {url} is not reachable: {_server_message(exc)}") from exc
    if response.status_code != 200 or "UP" not in response.text:
        raise StudioError(
            f"Label Studio at {url} is not ready: GET /health answered HTTP {response.status_code} "
            f"{_one_line(response.text[:200])!r}, expected 200 with status UP"
        )
    client = LabelStudio(base_url=url, api_key=api_key)
    try:  # a personal access token (JWT) is exchanged for an access token here: a bad one fails here too
        user = client.users.whoami(request_options=_NO_RETRY)
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise StudioError(
                f"Label Studio at {url} rejected the API key (HTTP {exc.status_code}) - "
                "set LABEL_STUDIO_API_KEY to a valid token"
            ) from exc
        raise StudioError(f"Label Studio at {url}: checking the API key failed: {_server_message(exc)}") from exc
    except httpx.HTTPError as exc:
        raise StudioError(f"Label Studio at {url} is not reachable: {_server_message(exc)}") from exc
    logger.info("Connected to Label Studio at %s as %s", url, getattr(user, "email", "?"))
    return client


def _canonical_config(label_config: str) -> str:
    """The config with attribute order and whitespace normalised (plain whitespace collapse if not XML)."""
    try:
        return ET.canonicalize(xml_data=label_config, strip_text=True)
    except ET.ParseError:
        return " ".join(label_config.split())


def _config_difference(existing: str, wanted: str) -> str:
    """A short human description of how two label configs differ."""
    old, new = config_channels(existing), config_channels(wanted)
    if old is not None and new is not None and old != new:
        missing = [name for name in new if name not in old]
        extra = [name for name in old if name not in new]
        detail = f"the channel list differs (project: {len(old)} channels, this import: {len(new)}"
        if missing:
            detail += f"; not in the project: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        if extra:
            detail += f"; not in this import: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}"
        if not missing and not extra:
            detail += "; same channels in another order"
        return detail + ")"
    a, b = _canonical_config(existing), _canonical_config(wanted)
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    around = slice(max(0, at - 20), at + 40)
    return f"they first differ at character {at}: project {a[around]!r}, import {b[around]!r}"


def get_or_create_project(
    client: LabelStudio, title: str, label_config: str, description: str = ""
) -> tuple[ProjectExt, bool]:
    """The project titled exactly ``title`` (created if absent, for active learning) and whether it was created.

    An existing project must have the same label config (up to whitespace and attribute order).
    """
    with _api(client, f"listing projects titled {title!r}"):
        listed: Iterable[AllRolesProjectList] = client.projects.list(
            title=title, include="id,title,label_config", page_size=100
        )
        matches = [project for project in listed if project.title == title]
    url = _base_url(client)
    if len(matches) > 1:
        ids = ", ".join(str(project.id) for project in matches)
        raise StudioError(
            f"Label Studio at {url} has {len(matches)} projects titled {title!r} (ids {ids}): "
            "rename or delete all but one, or import under another title"
        )
    if matches:
        found = matches[0]
        if _canonical_config(found.label_config or "") != _canonical_config(label_config):
            raise StudioError(
                f"Label Studio project {title!r} (id {found.id}) at {url} has a different labeling config "
                f"than this import: {_config_difference(found.label_config or '', label_config)}. "
                "Import into a new project (another title), or delete the project first"
            )
        logger.info("Reusing Label Studio project %r (id %s)", title, found.id)
        with _api(client, f"reading project {found.id}"):
            return client.projects.get(require_id(found.id, f"project {title!r}")), False
    try:
        created = client.projects.create(
            title=title,
            label_config=label_config,
            description=description,
            sampling=SAMPLING,
            show_collab_predictions=True,
            request_options=_NO_RETRY,
        )
    except ApiError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        if exc.status_code == 400 and "label_config" in (body.get("validation_errors") or {}):
            raise StudioError(
                f"Label Studio at {url} rejected the labeling config of new project {title!r}: {_server_message(exc)}"
            ) from exc
        raise StudioError(f"Label Studio at {url}: creating project {title!r} failed: {_server_message(exc)}") from exc
    except httpx.HTTPError as exc:
        raise StudioError(f"Label Studio at {url}: creating project {title!r} failed: {_server_message(exc)}") from exc
    logger.info("Created Label Studio project %r (id %s)", title, created.id)
    project_id = require_id(created.id, f"new project {title!r}")
    create_reading_view(client, project_id)
    with _api(client, f"reading project {project_id}"):
        return client.projects.get(project_id), True


def create_reading_view(client: LabelStudio, project_id: int) -> None:
    """The Data Manager's first tab: what a person reads (patient, time, the model's score and answer, the
    clinicians' answers), without the raw display series and the other bulky or internal columns."""
    hidden = [f"tasks:{column}" for column in HIDDEN_COLUMNS]
    with _api(client, f"creating the Data Manager view of project {project_id}"):
        client.views.create(
            project=project_id,
            data={"title": "Windows", "hiddenColumns": {"explore": hidden, "labeling": hidden}},
        )


def _task_pages(
    client: LabelStudio, project_id: int, include: str, page_size: int, query: str | None = None
) -> Iterator[tuple[list[Any], int]]:
    """Yield (tasks, total) page by page; ``include`` names the task fields the server sends."""
    page = 1
    while True:
        try:
            response: SyncPager[Any, Any] = client.tasks.list(
                project=project_id,
                fields="task_only",
                include=include,
                query=query,
                page=page,
                page_size=page_size,
                request_options={"timeout_in_seconds": _LIST_TIMEOUT_SECONDS},
            )
        except ApiError as exc:
            if exc.status_code == 404 and page > 1:  # "Invalid page": tasks were deleted meanwhile
                return
            raise
        items = list(response.items or [])
        total = int(getattr(response.response, "total", 0) or 0)
        yield items, total
        if len(items) < page_size or page * page_size >= total:
            return
        page += 1


def existing_window_ids(client: LabelStudio, project_id: int, progress: bool = False) -> set[str]:
    """The ``window_id`` of every task already in the project.

    Reads only each task's id and ``meta`` (``include=id,meta``), not its time series; tasks without
    ``meta.window_id`` (imported by other means) fall back to reading their ``data``. The server still
    loads every task row (about 20 ms a task of 40k numbers on SQLite): a new project needs no call.
    """
    window_ids: set[str] = set()
    without_meta: list[int] = []
    bar = tqdm(unit="task", desc=f"Tasks already in project {project_id}", disable=not progress)
    try:
        with _api(client, f"listing the tasks of project {project_id}"):
            for tasks, total in _task_pages(client, project_id, "id,meta", _ID_PAGE_SIZE):
                bar.total = total
                for task in tasks:
                    window_id = (task.meta or {}).get(WINDOW_ID_KEY)
                    if isinstance(window_id, str):
                        window_ids.add(window_id)
                    else:
                        without_meta.append(task.id)
                bar.update(len(tasks))
    finally:
        bar.close()
    if without_meta:
        logger.info(
            "%d tasks of project %s have no meta.%s: reading their data", len(without_meta), project_id, WINDOW_ID_KEY
        )
        with _api(client, f"reading the data of {len(without_meta)} tasks of project {project_id}"):
            for start in range(0, len(without_meta), _DATA_PAGE_SIZE):
                chunk = without_meta[start : start + _DATA_PAGE_SIZE]
                query = json.dumps({"selectedItems": {"all": False, "included": chunk}})
                for tasks, _ in _task_pages(client, project_id, "id,data", len(chunk), query):
                    for task in tasks:
                        window_id = (task.data or {}).get(WINDOW_ID_KEY)
                        if isinstance(window_id, str):
                            window_ids.add(window_id)
    return window_ids


def task_index(client: LabelStudio, project_id: int, after_id: int = 0) -> dict[int, dict[str, str] | None]:
    """``{task id: {"window_id": ..., "store": ...}}`` of the project's tasks with an id above ``after_id``.

    Reads ids and ``meta`` only (the ML backend maps its ranking onto tasks with it); tasks without both keys in
    ``meta`` (not imported by :func:`import_tasks`) map to None. With ``after_id`` the server filters by id, so
    only the new tasks are read.
    """
    query = None
    if after_id:
        item = {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": int(after_id)}
        query = json.dumps({"filters": {"conjunction": "and", "items": [item]}})
    index: dict[int, dict[str, str] | None] = {}
    with _api(client, f"listing the tasks of project {project_id}"):
        for tasks, _ in _task_pages(client, project_id, "id,meta", _ID_PAGE_SIZE, query):
            for task in tasks:
                meta = task.meta or {}
                keyed = all(isinstance(meta.get(key), str) for key in META_KEYS)
                index[int(task.id)] = {key: meta[key] for key in META_KEYS} if keyed else None
    return index


def _prepare_task(task: dict[str, Any]) -> dict[str, Any]:
    """A copy of the task in import form, with ``data.window_id`` and ``data.store`` mirrored into ``meta``."""
    prepared = dict(task) if "data" in task else {"data": task}
    data = prepared["data"] if isinstance(prepared["data"], dict) else {}
    mirrored = {key: data[key] for key in META_KEYS if isinstance(data.get(key), str)}
    if mirrored:
        prepared["meta"] = {**(prepared.get("meta") or {}), **mirrored}
    return prepared


def _describe_failure(exc: BaseException, batch: Sequence[dict[str, Any]], first_index: int) -> str:
    """The server's message, with the failing item named by its index in the whole import and window id."""
    message = _server_message(exc)
    found = re.search(r"Error at item (\d+)", message)
    if found and int(found.group(1)) < len(batch):
        item = int(found.group(1))
        data = batch[item].get("data")
        window_id = data.get(WINDOW_ID_KEY) if isinstance(data, dict) else None
        named = f"task {first_index + item}" + (f" (window_id {window_id!r})" if window_id else "")
        message = message.replace(found.group(0), f"Error at {named}", 1)
    return message


def _delete_tasks(client: LabelStudio, project_id: int, task_ids: Sequence[int]) -> None:
    for start in range(0, len(task_ids), _DELETE_CHUNK):
        chunk = list(task_ids[start : start + _DELETE_CHUNK])
        client.actions.create(
            id="delete_tasks",
            project=project_id,
            selected_items={"all": False, "included": chunk},
            request_options={"timeout_in_seconds": _IMPORT_TIMEOUT_SECONDS},
        )


def delete_tasks(client: LabelStudio, project_id: int, task_ids: Sequence[int]) -> None:
    """Delete the given tasks of the project (with their annotations and predictions)."""
    with _api(client, f"deleting {len(task_ids)} tasks of project {project_id}"):
        _delete_tasks(client, project_id, task_ids)


def annotation_counts(client: LabelStudio, project_id: int) -> dict[int, int]:
    """``{task id: number of annotations}`` of every task of the project (ids and counts only)."""
    with _api(client, f"listing the tasks of project {project_id}"):
        return {
            int(task.id): int(task.total_annotations or 0)
            for tasks, _ in _task_pages(client, project_id, "id,total_annotations", _ID_PAGE_SIZE)
            for task in tasks
        }


def import_tasks(
    client: LabelStudio,
    project_id: int,
    tasks: Iterable[dict[str, Any]],
    batch_size: int = 200,
    progress: bool = True,
    total: int | None = None,
) -> list[int]:
    """Import tasks in batches, all or nothing, and return the ids of the created tasks (in order).

    ``tasks`` may be a generator: only one batch is held in memory (``total`` sizes the progress bar).
    Each task is ``{"data": {...}, "predictions": [...], "annotations": [...]}`` (the lists optional).
    Whatever stops the import (a refused batch, the generator failing, Ctrl-C), the tasks created by the earlier
    batches of this call are deleted again before the exception goes on (a refused batch: a StudioError that says
    so; anything else: the same exception with a note).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if total is None and isinstance(tasks, Sequence):
        total = len(tasks)
    created: list[int] = []
    bar = tqdm(total=total, unit="task", desc=f"Import into project {project_id}", disable=not progress)
    number = 0
    try:
        iterator = iter(tasks)
        while batch := [_prepare_task(task) for task in islice(iterator, batch_size)]:
            number += 1
            created.extend(_import_batch_or_explain(client, project_id, batch, number, len(created)))
            bar.update(len(batch))
    except StudioError as exc:
        raise StudioError(f"{exc}; {_roll_back(client, project_id, created)}") from exc.__cause__
    except BaseException as exc:  # the task generator failed, or Ctrl-C: keep the project as it was
        undone = _roll_back(client, project_id, created)
        logger.warning("Import into project %s stopped (%s): %s", project_id, type(exc).__name__, undone)
        exc.add_note(undone)
        raise
    finally:
        bar.close()
    logger.info("Imported %d tasks into project %s in %d batches", len(created), project_id, number)
    return created


def _import_batch_or_explain(
    client: LabelStudio, project_id: int, batch: list[dict[str, Any]], number: int, start: int
) -> list[int]:
    """Import one batch; a refusal becomes a StudioError naming the batch and its failing task."""
    try:
        return _import_batch(client, project_id, batch)
    except (ApiError, httpx.HTTPError, StudioError) as exc:
        message = exc.args[0] if isinstance(exc, StudioError) else _describe_failure(exc, batch, start + 1)
        raise StudioError(
            f"Label Studio at {_base_url(client)} rejected batch {number} (tasks {start + 1}-{start + len(batch)}) "
            f"of the import into project {project_id}: {message}"
        ) from exc


def _import_batch(client: LabelStudio, project_id: int, batch: list[dict[str, Any]]) -> list[int]:
    response = client.projects.import_tasks(
        id=project_id,
        request=batch,  # type: ignore[arg-type]  # the SDK types ImportApiRequest models; it sends dicts as they are
        return_task_ids=True,
        # never retry an import: a retried POST could create the batch twice
        request_options={"max_retries": 0, "timeout_in_seconds": _IMPORT_TIMEOUT_SECONDS},
    )
    task_ids = list(response.task_ids or [])  # type: ignore[attr-defined]  # an undeclared field of the SDK's model
    if len(task_ids) != len(batch):
        raise StudioError(
            f"the server returned {len(task_ids)} task ids for {len(batch)} tasks "
            f"(task_count {response.task_count}); expected one id per task"
        )
    return task_ids


def _roll_back(client: LabelStudio, project_id: int, task_ids: list[int], whose: str = "of the earlier batches") -> str:
    """Delete the given tasks (``whose`` says which, for the message); say what happened, for the error message."""
    if not task_ids:
        return "no earlier batch to undo"
    try:
        _delete_tasks(client, project_id, task_ids)
    except (ApiError, httpx.HTTPError) as exc:
        logger.error("Could not delete the %d tasks already imported: %s", len(task_ids), _server_message(exc))
        return (
            f"deleting the {len(task_ids)} tasks {whose} ALSO failed ({_server_message(exc)}); "
            "re-running the import skips the windows already present"
        )
    return f"the {len(task_ids)} tasks {whose} were deleted"


def undo_import(client: LabelStudio, project_id: int, task_ids: list[int], project_created: bool) -> str | None:
    """Undo what a failed import did to Label Studio: the project it created, else the tasks it created.

    Returns what was done, for the error message (None: nothing to undo).
    """
    if project_created:
        try:
            delete_project(client, project_id)
        except StudioError as exc:
            return f"deleting project {project_id}, created by this import, ALSO failed ({exc})"
        return f"project {project_id}, created by this import, was deleted"
    if task_ids:
        return _roll_back(client, project_id, task_ids, whose="imported by this run")
    return None


def check_ml_backend(client: LabelStudio, url: str, basic_auth: tuple[str, str] | None = None) -> None:
    """Fail before anything is imported when the ML backend at ``url`` surely cannot be connected.

    Label Studio checks the backend from its own server (GET /health, POST /setup), which may reach hosts this
    machine cannot (a docker compose service name): so only certain failures stop here. Those are a URL that is
    not http(s), a backend that answers but not as a healthy ML backend (wrong URL or credentials), and one that
    cannot be reached while Label Studio and the backend are both on this machine (localhost URLs).
    """
    url = url.rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise StudioError(f"ML backend URL {url!r} is not a URL ({exc}); expected http(s)://host:port") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise StudioError(f"ML backend URL {url!r} is not a URL; expected http(s)://host:port")
    try:
        response = httpx.get(f"{url}/health", auth=basic_auth, timeout=10.0, follow_redirects=True)
    except httpx.HTTPError as exc:
        if _is_loopback(parsed.host) and _is_loopback(httpx.URL(_base_url(client)).host):
            raise StudioError(
                f"the ML backend {url} is not reachable: {_server_message(exc)}; expected it running there "
                "(start it, or fix --backend-url)"
            ) from exc
        logger.warning("ML backend %s is not reachable from here; Label Studio checks it from its server", url)
        return
    if response.is_error:  # what Label Studio's own check refuses too
        needs_auth = response.status_code == 401
        hint = " (a backend with basic auth needs BASIC_AUTH_USER and BASIC_AUTH_PASS)" if needs_auth else ""
        raise StudioError(
            f"the ML backend {url} is not ready: GET /health answered HTTP {response.status_code} "
            f"{_one_line(response.text[:200])!r}, expected 200{hint}"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connect_ml_backend(
    client: LabelStudio,
    project_id: int,
    url: str,
    title: str = "Spike detector",
    basic_auth: tuple[str, str] | None = None,
    webhook_secret: str | None = None,
) -> None:
    """Attach the ML backend at ``url`` to the project (reusing one already attached with that URL).

    ``basic_auth`` (user, password) is what the server sends to a backend that requires it. Label Studio's
    automatic webhook to ``<url>/webhook`` carries no credentials, so with ``webhook_secret`` it is given the
    header ``X-Webhook-Secret`` that the backend accepts on /webhook.
    """
    url = url.rstrip("/")
    with _api(client, f"listing the ML backends of project {project_id}"):
        backends = list(client.ml.list(project=project_id))
    if any((backend.url or "").rstrip("/") == url for backend in backends):
        logger.info("ML backend %s already connected to project %s", url, project_id)
    else:
        auth = {}
        if basic_auth:
            auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
        try:
            backend = client.ml.create(project=project_id, url=url, title=title, request_options=_NO_RETRY, **auth)
        except (ApiError, httpx.HTTPError) as exc:
            raise StudioError(
                f"Label Studio at {_base_url(client)} could not add the ML backend {url} to project {project_id}: "
                f"{_server_message(exc)}. The URL must be reachable from the Label Studio server (in docker "
                "compose: the service name, not localhost), a backend on localhost or a private network needs "
                "ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false in the server's environment, and a "
                "backend with basic auth needs BASIC_AUTH_USER and BASIC_AUTH_PASS here too"
            ) from exc
        logger.info("Connected ML backend %s to project %s (id %s)", url, project_id, backend.id)
    if webhook_secret:
        _set_webhook_secret(client, project_id, f"{url}/webhook", webhook_secret)


def _set_webhook_secret(client: LabelStudio, project_id: int, hook_url: str, secret: str) -> None:
    headers = {WEBHOOK_SECRET_HEADER: secret}
    with _api(client, f"setting the webhook header of project {project_id}"):
        hooks = [h for h in client.webhooks.list(project=str(project_id)) if (h.url or "").rstrip("/") == hook_url]
        for hook in hooks:
            client.webhooks.update(id=hook.id, headers=headers)
        if not hooks:
            client.webhooks.create(
                project=project_id, url=hook_url, headers=headers, send_payload=True, send_for_all_actions=True
            )


def connect_webhook(
    client: LabelStudio, project_id: int, url: str, actions: Sequence[str], secret: str | None = None
) -> None:
    """A webhook of ``actions`` (with their payload) from the project to ``url``, created once; with ``secret`` it
    sends the header ``X-Webhook-Secret`` that the ML backend accepts on /webhook."""
    headers = {WEBHOOK_SECRET_HEADER: secret} if secret else {}
    with _api(client, f"setting the webhook of project {project_id}"):
        hooks = [h for h in client.webhooks.list(project=str(project_id)) if (h.url or "").rstrip("/") == url]
        for hook in hooks:
            client.webhooks.update(id=hook.id, headers=headers, actions=list(actions), send_for_all_actions=False)
        if not hooks:
            client.webhooks.create(
                project=project_id, url=url, headers=headers, send_payload=True, send_for_all_actions=False,
                actions=list(actions),
            )  # fmt: skip


def prediction_ids(client: LabelStudio, project_id: int, model_versions: set[str]) -> list[int]:
    """The ids of the project's predictions of ``model_versions``."""
    with _api(client, f"listing the predictions of project {project_id}"):
        return [int(p.id) for p in client.predictions.list(project=project_id) if p.model_version in model_versions]


def prediction_ids_of_tasks(client: LabelStudio, task_ids: Sequence[int], model_versions: set[str]) -> list[int]:
    """The ids of the predictions of ``model_versions`` on ``task_ids`` (one request per task)."""
    ids = []
    with _api(client, f"listing the predictions of {len(task_ids)} tasks"):
        for task_id in task_ids:
            ids += [int(p.id) for p in client.predictions.list(task=int(task_id)) if p.model_version in model_versions]
    return ids


def delete_prediction_ids(client: LabelStudio, ids: Sequence[int]) -> None:
    """Delete predictions, one request each; one already gone is skipped.

    Label Studio's own ``DELETE /api/projects/{id}/model-versions/`` deletes a version in one transaction that
    updates each task's counters one by one (15-20 ms a prediction here): in a large project it held SQLite's write
    lock for minutes, and the labeling stream of every clinician waited (51 s measured for 2,000 predictions).
    Single deletions hold it for one prediction at a time.
    """
    with _api(client, f"deleting {len(ids)} predictions"):
        for prediction_id in ids:
            try:
                client.predictions.delete(id=int(prediction_id))
            except ApiError as exc:
                if exc.status_code != 404:
                    raise


def delete_project(client: LabelStudio, project_id: int) -> None:
    """Delete a project with all its tasks (used to undo a project created by a failed import)."""
    with _api(client, f"deleting project {project_id}"):
        client.projects.delete(project_id, request_options={"timeout_in_seconds": _IMPORT_TIMEOUT_SECONDS})
    logger.info("Deleted Label Studio project %s", project_id)
