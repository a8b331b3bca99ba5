"""A retraining that fails is said to people: in the Label Studio project's description and on /report, with since
when and why, until a retraining succeeds (against the real Label Studio)."""

from __future__ import annotations

import pytest
from test_ranking_push import retrain_now, small_tasks_project

from converters import studio
from ls_backend.budget.page import report_response
from ls_backend.budget.render import FAILURE_MARK
from ls_backend.failures import load_failure
from ls_backend.stores import TaskInputError


def description(client, project_id: int) -> str:
    return client.projects.get(id=project_id).description or ""


def test_a_failing_retraining_is_shown_in_label_studio_and_on_the_report_until_one_succeeds(
    label_studio, studio_client, tmp_path
):
    engine, project_id, _ = small_tasks_project(label_studio, studio_client, tmp_path, 30)
    studio_client.projects.update(id=project_id, description="Patient 7, left temporal depth electrodes.")
    store = tmp_path / "stores" / "P" / "rec.h5"
    store.rename(store.with_suffix(".moved"))  # the window store went missing (an unmounted share)
    try:
        for _ in range(2):  # the queue retries: the notice keeps the first failure's time and counts attempts
            with pytest.raises(TaskInputError):
                retrain_now(engine, project_id, studio_client)
        failure = load_failure(engine.registry.state(project_id).dir)
        assert failure is not None and failure.attempts == 2 and failure.since < failure.last
        assert failure.reason.startswith("TaskInputError: ") and "P/rec.h5" in failure.reason
        text = description(studio_client, project_id)
        assert text.startswith("Patient 7, left temporal depth electrodes.")  # the manager's own text stays
        assert text.count(FAILURE_MARK) == 1 and f"{FAILURE_MARK}{failure.line()}" in text
        assert "since " in failure.line() and "2 attempts" in failure.line()
        with_notice = report_response(engine.settings, str(project_id)).get_data(as_text=True)
        assert "id='failure'" in with_notice and "could not be updated" in with_notice
    finally:
        store.with_suffix(".moved").rename(store)

    result = retrain_now(engine, project_id, studio_client)  # the share is back
    assert result.n_ranked == 30
    assert load_failure(engine.registry.state(project_id).dir) is None
    text = description(studio_client, project_id)
    assert FAILURE_MARK not in text and text.startswith("Patient 7, left temporal depth electrodes.")
    assert "could not be updated" not in report_response(engine.settings, str(project_id)).get_data(as_text=True)
    studio.delete_project(studio_client, project_id)
