"""fetch_labels against the real Label Studio: every annotated task of a project past one page (any page size)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from converters import studio
from converters.labelconfig import make_label_config, window_result
from ls_backend.labels import fetch_labels

N_ANNOTATED = 230  # more than the default page of 100, and not a multiple of any page size below
N_UNANNOTATED = 15
CHOICES = ("Spike", "No spike", "Unsure")


def answers_of(k: int) -> list[str]:
    """Task k's clinicians' answers: one, or two that disagree on every fifth task."""
    return [CHOICES[k % 3]] + (["Spike"] if k % 5 == 0 else [])


def window_task(k: int, annotated: bool) -> dict:
    data = {"ts": {"time": [0.0, 0.5], "ch0": [0.0, 1.0]}, "window_id": f"w{k}", "store": "P/r.h5"}
    annotations = [{"result": [window_result(a)], "lead_time": 2.0} for a in answers_of(k)] if annotated else []
    return {"data": data, "annotations": annotations}


@pytest.fixture(scope="module")
def labeled_project(label_studio):
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    project, _ = studio.get_or_create_project(client, f"paging {uuid.uuid4().hex[:8]}", make_label_config(["A1-A2"]))
    tasks = [window_task(k, True) for k in range(N_ANNOTATED)]
    tasks += [window_task(N_ANNOTATED + k, False) for k in range(N_UNANNOTATED)]
    studio.import_tasks(client, project.id, tasks, progress=False)
    yield client, project.id
    studio.delete_project(client, project.id)


def counting_client(label_studio, pages: list) -> Any:
    """An SDK client that records (page, HTTP status, tasks in it) of each task list the server answers."""
    from label_studio_sdk import LabelStudio

    def record(response: httpx.Response) -> None:
        if response.request.url.path.rstrip("/").endswith("/api/tasks"):
            response.read()
            tasks = response.json().get("tasks", []) if response.status_code == 200 else []
            pages.append((int(response.request.url.params["page"]), response.status_code, len(tasks)))

    http = httpx.Client(event_hooks={"response": [record]}, timeout=60)
    return LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http)


@pytest.mark.parametrize("page_size", [100, 64, N_ANNOTATED - 1])
def test_every_annotated_task_is_fetched_with_its_target(label_studio, labeled_project, page_size):
    _, project_id = labeled_project
    pages: list[tuple[int, int, int]] = []
    labels = fetch_labels(counting_client(label_studio, pages), project_id, page_size=page_size)
    full, rest = divmod(N_ANNOTATED, page_size)
    read = [(page, n) for page, status, n in pages if status == 200]
    assert read == [(k + 1, page_size) for k in range(full)] + [(full + 1, rest)]  # several pages, each in full
    assert all(status == 404 and page == full + 2 for page, status, _ in pages if status != 200)  # the SDK's end
    expected = {}
    for k in range(N_ANNOTATED):
        values = [{"Spike": 1.0, "No spike": 0.0, "Unsure": 0.5}[a] for a in answers_of(k)]
        expected[f"w{k}"] = (sum(values) / len(values), len(values))
    assert len(labels) == N_ANNOTATED  # each task once, the unannotated ones left out
    assert {lab.window_id: (lab.target, len(lab.annotators)) for lab in labels} == expected
    assert len({lab.task_id for lab in labels}) == N_ANNOTATED
