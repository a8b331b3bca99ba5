"""``python -m converters.import`` against the real Label Studio: import, idempotency, rollback, the editor."""

from __future__ import annotations

import uuid

import pytest
from editor_waits import wait_for_traces

import converters.cli as cli
from converters.synthetic import PATIENTS, write_bids, write_edf

SECONDS = 30


@pytest.fixture(scope="module")
def patient_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids")
    write_bids(root, "p01", PATIENTS["A"], SECONDS)  # 2048 Hz: 30 s give exactly 15 windows at 256 Hz
    return root


def run_import(label_studio, source, tmp_path, *args, token=None):
    return cli.main(
        [str(source), "--url", label_studio.url, "--api-key", token or label_studio.token,
         "--store-dir", str(tmp_path / "stores"), *map(str, args)]
    )


def project_by_title(client, title):
    return next((p for p in client.projects.list(title=title) if p.title == title), None)


def n_tasks(client, project_id):
    return client.projects.get(project_id).task_number


def test_import_is_idempotent_and_sets_up_active_learning(label_studio, studio_client, patient_dir, tmp_path, capsys):
    title = f"Spikes import {uuid.uuid4().hex[:6]}"
    args = ["--patient", "P01", "--project", title]
    assert run_import(label_studio, patient_dir, tmp_path, *args) == 0
    project = project_by_title(studio_client, title)
    assert n_tasks(studio_client, project.id) == SECONDS // 2
    assert project.sampling == "Uncertainty sampling"
    assert "B'1-B'2" in project.label_config
    assert run_import(label_studio, patient_dir, tmp_path, *args) == 0  # the same files again
    assert "0 new tasks, 15 already present" in capsys.readouterr().out
    assert n_tasks(studio_client, project.id) == SECONDS // 2


def test_config_mismatch_leaves_the_project_as_it_was(label_studio, studio_client, patient_dir, tmp_path, capsys):
    title = f"Spikes mismatch {uuid.uuid4().hex[:6]}"
    assert run_import(label_studio, patient_dir, tmp_path, "--patient", "P01", "--project", title) == 0
    other = write_edf(tmp_path / "other.edf", PATIENTS["C"], 10)  # another electrode layout
    assert run_import(label_studio, other, tmp_path, "--patient", "P01", "--project", title) == 2
    err = capsys.readouterr().err
    assert "different labeling config" in err and title in err
    assert n_tasks(studio_client, project_by_title(studio_client, title).id) == SECONDS // 2


def test_a_failed_import_removes_the_project_it_created(
    label_studio, studio_client, patient_dir, tmp_path, monkeypatch, capsys
):
    real_make_tasks = cli.make_tasks

    def tasks_then_a_broken_one(*args, **kwargs):
        yield from list(real_make_tasks(*args, **kwargs))[:5]
        yield {"data": {"window_id": "broken", "no_ts": 1}}

    monkeypatch.setattr(cli, "make_tasks", tasks_then_a_broken_one)
    title = f"Spikes broken {uuid.uuid4().hex[:6]}"
    args = ["--patient", "P01", "--project", title, "--batch-size", "2"]
    assert run_import(label_studio, patient_dir, tmp_path, *args) == 2
    assert "rejected batch 3" in capsys.readouterr().err
    assert project_by_title(studio_client, title) is None


def test_server_down_or_token_rejected(label_studio, patient_dir, tmp_path, capsys):
    code = cli.main([str(patient_dir), "--patient", "P", "--url", "http://127.0.0.1:9", "--api-key", "x"])
    assert code == 2 and "not reachable" in capsys.readouterr().err
    assert run_import(label_studio, patient_dir, tmp_path, "--patient", "P", token="wrong-token") == 2
    assert "rejected the API key" in capsys.readouterr().err


@pytest.mark.slow
def test_imported_tasks_draw_every_channel_by_name(label_studio, studio_client, studio_page, tmp_path):
    title = f"Spikes browser {uuid.uuid4().hex[:6]}"
    source = write_bids(tmp_path / "bids", "p02", PATIENTS["A"], 6)
    assert run_import(label_studio, source, tmp_path, "--patient", "P02", "--project", title, "--events",
                      "predictions") == 0
    project = project_by_title(studio_client, title)
    task = next(iter(studio_client.tasks.list(project=project.id)))
    names = task.data["channels"].split(", ")
    page = studio_page
    page.goto(f"{label_studio.url}/projects/{project.id}/data?task={task.id}")
    wait_for_traces(page, len(names))  # the editor reports its errors while it draws
    page.screenshot(path=tmp_path / "imported_task.png", full_page=True)
    assert page.locator(".htx-timeseries-channel svg").count() >= len(names)
    body = page.locator("body").inner_text()
    missing = [name for name in names if name not in body]
    assert missing == [], f"channel legends not drawn: {missing} (screenshot {tmp_path})"
    assert page.console_errors == [], f"editor errors ({tmp_path}): {page.console_errors}"
