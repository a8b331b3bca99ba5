"""Label budget: the learning-curve estimate, the stored budget, the status, its texts and the /report page."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
from rq import SimpleWorker

import ls_backend.loop as loop
import ls_backend.worker as worker
from converters import studio
from converters.labelconfig import window_result
from ls_backend.app import create_app
from ls_backend.budget import (
    Budget,
    after_retraining,
    assess,
    compute_status,
    fit_learning_curve,
    load_budget,
    save_budget,
)
from ls_backend.budget.__main__ import main as budget_cli
from ls_backend.budget.plan import parse_clinician, positive_count
from ls_backend.budget.render import DESCRIPTION_MARK, description_summary, text_table, with_summary
from ls_backend.budget.status import SPENT_SUFFIX, BudgetStatus, marked_version, ranking_version, save_status
from ls_backend.config import Settings
from ls_backend.jobs import RetrainQueue
from ls_backend.labels import TaskLabel, task_label


def curve_points(plateau=0.9, scale=2.0, exponent=0.6, labels=(20, 40, 80, 120, 160, 200)):
    n = np.array(labels, float)
    return n, plateau - scale * n**-exponent


# -- the learning curve -------------------------------------------------------------------------------------


def test_the_fit_recovers_a_saturating_curve_and_the_labels_to_a_target():
    n, y = curve_points()
    curve = fit_learning_curve(n, y)
    assert curve.plateau == pytest.approx(0.9, abs=0.01) and curve.exponent == pytest.approx(0.6, abs=0.05)
    exact = (2.0 / (0.9 - 0.85)) ** (1 / 0.6)  # where 0.9 - 2 n^-0.6 = 0.85
    assert curve.labels_for(0.85) == pytest.approx(exact, rel=0.1)
    assert curve.labels_for(0.95) == math.inf  # above the plateau: never


def test_assess_estimates_with_a_range_and_says_it_is_rough():
    n, y = curve_points()
    result = assess(n, y, target=0.85, spent=200)
    exact = (2.0 / 0.05) ** (1 / 0.6) - 200
    assert result.labels_to_target == pytest.approx(exact, rel=0.15)
    low, high = result.labels_to_target_range
    assert low <= result.labels_to_target <= high
    assert not result.flat and not result.target_reached
    assert f"About {math.ceil(result.labels_to_target)} more labels" in result.advice and "rough" in result.advice


def test_two_answers_per_window_double_the_labels_needed():
    n, y = curve_points()
    one = assess(n, y, target=0.85, spent=200)
    two = assess(n, y, target=0.85, spent=200, labels_per_window=2.0)
    assert two.labels_to_target == pytest.approx(2 * one.labels_to_target)


def test_a_failing_report_never_fails_the_retraining(tmp_path, caplog):
    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("Label Studio went away")

    after_retraining(Settings(model_dir=tmp_path), Broken(), "3", LABELS)
    assert "refreshing the budget report failed" in caplog.text


def test_too_few_points_give_no_estimate():
    result = assess([20, 40], [0.5, 0.6], target=0.8, spent=40)
    assert result.labels_to_target is None and "Too early to estimate" in result.advice
    assert assess([], [], target=0.8, spent=5).curve is None


def test_a_flat_curve_suggests_stopping():
    n = np.array([50, 100, 150, 200, 250])
    result = assess(n, [0.70, 0.71, 0.70, 0.71, 0.71], target=0.9, spent=250)
    assert result.flat and "stopped improving" in result.advice
    plateau = assess([20, 40, 80], [0.3, 0.5, 0.6], target=0.99, spent=80)  # levels off well below 0.99
    assert plateau.labels_to_target == math.inf or plateau.labels_to_target > 100 * 80
    assert "below the target" in plateau.advice


def test_a_reached_target_says_stop():
    assert "reached" in assess([20, 40, 80], [0.5, 0.8, 0.9], target=0.85, spent=80).advice


def test_the_fit_rejects_bad_points():
    with pytest.raises(ValueError, match="at least 2"):
        fit_learning_curve([10], [0.5])
    with pytest.raises(ValueError, match="positive"):
        fit_learning_curve([0, 10], [0.5, 0.6])


# -- the budget ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", "0", "-3", "1.5", "", "nan", "inf"])
def test_a_budget_must_be_a_positive_whole_number(bad):
    with pytest.raises(ValueError, match=f"must be a positive whole number of labels, got {bad!r}"):
        positive_count(bad, "the label budget")


def test_budget_file_and_environment_defaults(tmp_path):
    settings = Settings(model_dir=tmp_path, label_budget=300, target_auprc=0.7)
    assert load_budget(settings, 3) == Budget(300, {}, 0.7)  # nothing set: the environment's defaults
    save_budget(tmp_path, "3.1700", Budget(400, {"a@x.org": 200}, 0.85))
    assert load_budget(settings, 3) == Budget(400, {"a@x.org": 200}, 0.85)
    assert load_budget(Settings(model_dir=tmp_path), 4).labels is None  # no budget at all
    assert parse_clinician("a=b@x.org=20") == ("a=b@x.org", 20)
    with pytest.raises(ValueError, match="EMAIL=LABELS"):
        parse_clinician("a@x.org")
    with pytest.raises(ValueError, match="LABEL_BUDGET"):
        Settings.from_env({"LABEL_BUDGET": "-1"})
    with pytest.raises(ValueError, match="LABEL_BUDGET='many'"):
        Settings.from_env({"LABEL_BUDGET": "many"})


def test_the_cli_rejects_a_bad_budget_with_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    assert budget_cli(["set", "--project", "3", "--labels", "lots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--labels must be a positive whole number of labels, got 'lots'" in err
    assert budget_cli(["set", "--project", "../3", "--labels", "10"]) == 2
    assert "project must be a Label Studio project id" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        budget_cli(["report"])
    assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1


class OneProject:
    """A Label Studio that has project 3 (all the ``set`` command asks of it)."""

    class projects:  # noqa: N801 - mirrors the SDK client's attribute
        @staticmethod
        def get(id):
            assert id == 3
            return {"id": 3}


def test_setting_a_budget_with_redis_queues_the_reranking_for_the_rq_workers(redis_url, tmp_path, monkeypatch):
    for name, value in {"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "RETRAIN_DEBOUNCE_SECONDS": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(studio, "connect", lambda url, key: OneProject())
    dispatcher = worker.RQDispatcher(redis_url)  # the queue the webhook's requests go to
    dispatcher.queue.empty()
    dispatcher.release("3")
    runs = []
    monkeypatch.setattr(worker, "_worker_state", lambda: (RetrainQueue(tmp_path, runs.append), dispatcher))
    try:
        assert budget_cli(["set", "--project", "3", "--labels", "40"]) == 0
        assert [job.args for job in dispatcher.queue.jobs] == [("3",)]
        SimpleWorker([dispatcher.queue], connection=dispatcher.redis).work(burst=True)
        assert runs == ["3"] and RetrainQueue(tmp_path, runs.append).pending() == []  # retrained, nothing left
    finally:
        dispatcher.queue.empty()
        dispatcher.release("3")


def test_setting_a_budget_with_redis_down_says_the_budget_is_saved(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    monkeypatch.setattr(studio, "connect", lambda url, key: OneProject())
    assert budget_cli(["set", "--project", "3", "--labels", "40"]) == 2
    err = capsys.readouterr().err
    assert "budget is saved, but the re-ranking could not be queued in Redis at redis://127.0.0.1:1/0" in err
    assert load_budget(Settings(model_dir=tmp_path), 3).labels == 40


# -- the status ---------------------------------------------------------------------------------------------


def label(task_id, target, annotators, lead_times):
    return TaskLabel(task_id, f"w{task_id}", "P/rec.h5", 0.0, target, annotators=annotators, lead_times=lead_times)


LABELS = [
    label(1, 1.0, [1, 2], [30.0, 20.0]),
    label(2, 0.0, [1], [10.0]),
    label(3, 0.5, [2], [40.0]),
    label(4, 1.0, [{"id": 2, "email": "b@x.org"}], [5.0]),
]
HISTORY = [
    {"version": "p3-v0001", "labels_used": 4, "metrics": {"n_validation": 0, "candidate_auprc": 0.0}},
    {"version": "p3-v0002", "labels_used": 12, "metrics": {"n_validation": 3, "candidate_auprc": 0.6}},
    {"version": "p3-v0003", "labels_used": 24, "metrics": {"n_validation": 5, "candidate_auprc": 0.7}},
]


BUDGET = Budget(6, {"a@x.org": 2, "c@x.org": 10}, 0.8)


def make_status(budget=BUDGET):
    return compute_status("3", "Spikes P03", budget, LABELS, HISTORY, {1: "a@x.org", 2: "b@x.org"})


def test_the_status_counts_labels_time_clinicians_and_spikes():
    status = make_status()
    assert (status.spent, status.labeled_windows, status.spike_windows, status.no_spike_windows) == (5, 4, 3, 1)
    assert status.seconds == 105.0 and status.remaining == 1 and not status.is_spent
    by_name = {c.name: c for c in status.clinicians}
    assert (by_name["a@x.org"].labels, by_name["a@x.org"].seconds, by_name["a@x.org"].budget) == (2, 40.0, 2)
    assert (by_name["b@x.org"].labels, by_name["b@x.org"].seconds) == (3, 65.0)
    assert by_name["c@x.org"].labels == 0  # has a budget, labeled nothing yet
    assert [p["labels"] for p in status.quality] == [12, 24]  # the unvalidated first version is left out
    assert status.version == "p3-v0003"
    assert BudgetStatus.from_dict(json.loads(json.dumps(status.to_dict()))) == status  # as saved for /report


def test_texts_say_what_was_spent_and_bought():
    spent = make_status(Budget(5))
    assert spent.is_spent and spent.remaining == 0
    table = text_table(spent)
    assert "Labels spent" in table and "5 (budget spent)" in table and "b@x.org" in table and "12 -> 0.600" in table
    summary = description_summary(spent)
    assert summary.startswith("BUDGET SPENT.") and "stop labeling" in summary and "Spike windows found: 3" in summary
    assert "Own budget spent: a@x.org (2 of 2)." in text_table(make_status())  # a clinician's own share
    own = "Night 1 of P03, reviewed by the epilepsy team."
    description = with_summary(own, summary)
    assert description.startswith(own) and DESCRIPTION_MARK in description
    again = with_summary(description, "new summary")
    assert again.startswith(own) and again.count(DESCRIPTION_MARK) == 1 and again.endswith("new summary")


def test_a_spent_budget_marks_the_ranking_version(tmp_path):
    settings = Settings(model_dir=tmp_path)
    save_budget(tmp_path, 3, Budget(5))
    assert ranking_version(settings, 3, "p3-v0002", LABELS[:2]) == "p3-v0002"  # 3 of 5
    assert marked_version(tmp_path / "3", "p3-v0002") == "p3-v0002"
    assert ranking_version(settings, 3, "p3-v0003", LABELS) == "p3-v0003" + SPENT_SUFFIX  # 5 of 5
    assert marked_version(tmp_path / "3", "p3-v0003") == "p3-v0003" + SPENT_SUFFIX
    save_budget(tmp_path, 3, Budget(50))  # the manager raised it
    assert ranking_version(settings, 3, "p3-v0004", LABELS) == "p3-v0004"
    assert marked_version(tmp_path / "3", "p3-v0004") == "p3-v0004"
    (tmp_path / "3" / "budget.json").write_text("{broken")
    assert ranking_version(settings, 3, "p3-v0005", LABELS) == "p3-v0005"  # logged, never stops a retraining


def parsed(task_id, *choices):
    """The label of a task whose clinicians gave ``choices`` (None: a renamed choice), parsed as the training does."""
    result = [[window_result(c)] if c else [{"from_name": "window", "type": "choices", "value": {"choices": ["Spk"]}}]
              for c in choices]  # fmt: skip
    annotations = [{"result": r, "completed_by": k + 1, "lead_time": 10.0} for k, r in enumerate(result)]
    data = {"window_id": f"w{task_id}", "store": "P/r.h5"}
    return task_label({"id": task_id, "data": data, "annotations": annotations})


MIXED = [("Spike",), ("Spike", "Spike"), ("Spike", "Unsure"), ("Unsure",), ("Spike", "No spike"),  # 5 spikes
         ("No spike", "Unsure"), ("No spike",), ("No spike", "No spike"), ("Unsure", "Unsure", "No spike")]  # fmt: skip


def test_an_unknown_choice_costs_the_budget_only_its_own_answer():
    labels = [parsed(1, "Spike", None, "No spike"), parsed(2, None)]
    status = compute_status("3", "P03", Budget(), [lab for lab in labels if lab], [], {1: "a@x.org", 3: "c@x.org"})
    assert (status.spent, status.labeled_windows, status.spike_windows) == (2, 1, 1)
    assert {c.name: c.labels for c in status.clinicians} == {"a@x.org": 1, "c@x.org": 1}


class RowDetector:
    """Stands in for the network: fits nothing, "predicts" each window's row number (to tell scored rows apart)."""

    n_times_ = 4
    background_shift_ = 0.0

    def __init__(self, **params):
        pass

    def fit(self, X, y, sample_weight=None, dense_targets=None, init_from=None, X_unlabeled=None):
        return self

    def predict_proba(self, X):
        return X[:, 0, 0]


@pytest.mark.parametrize("copies", [1, 3])  # 9 labels: cross-validated; 27: a held-back slice
def test_the_budget_and_the_validation_call_the_same_windows_spikes(copies, monkeypatch):
    labels = [parsed(k, *MIXED[k % len(MIXED)]) for k in range(copies * len(MIXED))]
    scored = []
    monkeypatch.setattr(loop, "SpikeDetector", RowDetector)
    monkeypatch.setattr(loop, "auprc", lambda truth, proba: scored.append((truth, proba)) or 0.5)
    y = np.array([lab.target for lab in labels], np.float32)
    X = np.repeat(np.arange(len(y), dtype=np.float32)[:, None, None], 4, axis=2)
    loop.train_and_validate(loop.Labeled(X, y, np.full((len(y), 4), np.nan, np.float32), 128.0), None)
    (truth, rows), *_ = scored
    assert len(rows) >= 2 and any(y[rows.astype(int)] == 0.5)  # ties ("Unsure", Spike + No spike) are scored
    for is_spike, row in zip(truth, rows.astype(int)):  # each scored window, one at a time through the budget
        alone = compute_status("3", "P03", Budget(), [labels[row]], [], {})
        assert (alone.spike_windows, alone.no_spike_windows) == ((1, 0) if is_spike else (0, 1)), MIXED[row % 9]
    everything = compute_status("3", "P03", Budget(), labels, [], {})
    assert everything.spike_windows == 5 * copies and everything.no_spike_windows == 4 * copies


# -- the page -----------------------------------------------------------------------------------------------


class NoEngine:
    """The report page needs no model."""


def page_client(tmp_path, **overrides):
    settings = Settings(model_dir=tmp_path / "models", **overrides)
    return create_app(settings, NoEngine()).test_client(), settings


def test_the_report_page_shows_the_numbers_and_the_figure(tmp_path):
    client, settings = page_client(tmp_path)
    save_status(settings.model_dir, make_status(Budget(5)))
    response = client.get("/report/3")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "Spikes P03" in html and "Budget spent (5 of 5 labels)" in html and "b@x.org" in html
    assert 'href="../detections/3"' in html  # the spikes found in the whole recording
    png = base64.b64decode(html.split("data:image/png;base64,")[1].split('"')[0])
    assert png.startswith(b"\x89PNG")


def test_the_report_page_explains_bad_unknown_and_empty_projects(tmp_path):
    client, settings = page_client(tmp_path)
    response = client.get("/report/abc")
    assert response.status_code == 400 and "not a Label Studio project id" in response.get_data(as_text=True)
    assert client.get("/report/..").status_code == 400  # reaches the page: refused before any file is read
    assert client.get("/report/..%2F..%2Fetc").json["error"] == "Not Found"  # a slash never reaches the page
    response = client.get("/report/9")
    assert response.status_code == 404 and "never seen project 9" in response.get_data(as_text=True)
    save_budget(settings.model_dir, 9, Budget(40))
    response = client.get("/report/9")
    assert response.status_code == 200 and "no labels yet" in response.get_data(as_text=True)
    assert "the budget is 40 labels" in response.get_data(as_text=True)


def test_the_report_page_needs_the_backend_credentials(tmp_path):
    client, settings = page_client(tmp_path, basic_auth_user="u", basic_auth_pass="p")
    save_status(settings.model_dir, make_status())
    assert client.get("/report/3").status_code == 401
    token = base64.b64encode(b"u:p").decode()
    assert client.get("/report/3", headers={"Authorization": f"Basic {token}"}).status_code == 200
