"""The label budget against the real Label Studio: two clinicians label, the budget runs out, the backend says so."""

from __future__ import annotations

import json
import uuid

import pytest

import converters.cli as cli
from converters.labelconfig import window_result
from converters.synthetic import PATIENTS, write_bids
from ls_backend.app import create_app
from ls_backend.budget.__main__ import main as budget_cli
from ls_backend.budget.render import DESCRIPTION_MARK
from ls_backend.budget.status import SPENT_SUFFIX
from ls_backend.config import Settings
from ls_backend.engine import SpikeEngine
from ls_backend.retrain import retrain_project


def truth_of(task) -> str:
    return task.predictions[0].result[-1]["value"]["choices"][0]  # the synthetic events, imported as predictions


@pytest.fixture
def project(label_studio, studio_client, tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("budget")
    source = write_bids(root / "bids", "p05", PATIENTS["C"], 60)  # 30 windows, spike-wave at 12/min
    title = f"Spikes budget {uuid.uuid4().hex[:6]}"
    args = [str(source), "--patient", "P05", "--project", title, "--url", label_studio.url, "--api-key",
            label_studio.token, "--store-dir", str(root / "stores"), "--events", "predictions"]  # fmt: skip
    assert cli.main(args) == 0
    created = next(p for p in studio_client.projects.list(title=title) if p.title == title)
    studio_client.projects.update(id=created.id, description="Night 1 of P05.")
    environment = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "MODEL_DIR": str(root / "models"),
        "WINDOW_STORE_DIR": str(root / "stores"),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    yield root, created
    studio_client.projects.delete(id=created.id)


@pytest.mark.slow
def test_two_clinicians_spend_the_budget_and_the_backend_stops_asking(label_studio, studio_client, project, capsys):
    root, created = project
    key = str(created.id)
    second = f"clinician-{uuid.uuid4().hex[:6]}@example.org"
    other = studio_client.users.create(username=second.split("@")[0], email=second, password="budget-test-pass1")

    # bad input first: a project Label Studio does not have, a project without labels
    assert budget_cli(["set", "--project", "999999", "--labels", "10"]) == 2
    assert "has no project 999999" in capsys.readouterr().err
    assert budget_cli(["set", "--project", key, "--labels", "14", "--clinician", f"{second}=2"]) == 0
    assert "budget 14 labels" in capsys.readouterr().out
    assert budget_cli(["report", "--project", key, "--png", str(root / "empty.png")]) == 2
    assert "has no labels yet" in capsys.readouterr().err

    tasks = list(studio_client.tasks.list(project=created.id, fields="all"))
    spikes = [t for t in tasks if truth_of(t) == "Spike"]
    quiet = [t for t in tasks if truth_of(t) == "No spike"]
    assert len(spikes) >= 6 and len(quiet) >= 6
    for task in spikes[:6] + quiet[:6]:  # the token's owner labels 12 windows, 10 s each
        studio_client.annotations.create(id=task.id, result=[window_result(truth_of(task))], lead_time=10.0)
    for task in (spikes[0], quiet[0]):  # the second clinician answers two of them again, 30 s each
        studio_client.annotations.create(id=task.id, result=[window_result(truth_of(task))], lead_time=30.0,
                                         completed_by=other.id)  # fmt: skip

    settings = Settings.from_env()
    engine = SpikeEngine(settings)
    result = retrain_project(settings, key, client=studio_client)

    # the budget (14 labels) is spent: the ranking and the project say so
    assert result.version.endswith(SPENT_SUFFIX) and engine.model_version(key) == result.version
    live = studio_client.projects.get(created.id)
    assert live.model_version == result.version and live.sampling == "Sequential sampling"
    own, block = live.description.split(DESCRIPTION_MARK)
    assert own.strip() == "Night 1 of P05." and "BUDGET SPENT" in block and "Spike windows found: 6" in block

    status = json.loads((root / "models" / key / "budget_status.json").read_text())
    assert (status["spent"], status["labeled_windows"], status["spike_windows"], status["seconds"]) == (14, 12, 6, 180)
    clinicians = {c["name"]: c for c in status["clinicians"]}
    assert clinicians[second] == {"name": second, "labels": 2, "seconds": 60.0, "budget": 2}
    assert clinicians[label_studio.username]["labels"] == 12
    assert [p["labels"] for p in status["quality"]] == [12]  # validated on a held-back slice of the 12 windows

    assert budget_cli(["report", "--project", key, "--png", str(root / "report.png")]) == 0
    out = capsys.readouterr().out
    assert "14 (budget spent)" in out and second in out and (root / "report.png").read_bytes()[:4] == b"\x89PNG"

    page = create_app(settings, engine).test_client().get(f"/report/{key}").get_data(as_text=True)
    assert "Budget spent (14 of 14 labels)" in page and "bought 6 spike windows" in page
