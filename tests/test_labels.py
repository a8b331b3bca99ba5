"""Annotations -> targets: several clinicians, "Unsure", regions, cancelled annotations."""

from converters.labelconfig import region_result, window_result
from ls_backend.labels import annotation_choice, task_label


def task(*annotations, **data):
    return {"id": 5, "data": {"window_id": "w", "store": "P/r.h5", "onset_seconds": 10.0} | data,
            "annotations": [{"result": r, "completed_by": k, "lead_time": 3.0} for k, r in enumerate(annotations)]}


def test_two_clinicians_and_unsure_make_a_soft_target():
    label = task_label(task([window_result("Spike")], [window_result("Unsure")]))
    assert label.target == 0.75 and label.annotators == [0, 1] and label.lead_time_seconds == 6.0


def test_a_region_without_a_choice_counts_as_spike():
    result = [region_result(10.2, 10.27, "Spike", "r1"), region_result(11.0, 11.5, "Artifact", "r2")]
    assert annotation_choice(result) == "Spike"
    label = task_label(task(result, [window_result("No spike")]))
    assert label.target == 0.5 and label.regions == [(10.2, 10.27, 0.5)]


def test_unlabeled_cancelled_or_foreign_tasks_give_nothing():
    assert task_label(task([])) is None
    cancelled = task([window_result("Spike")])
    cancelled["annotations"][0]["was_cancelled"] = True
    assert task_label(cancelled) is None
    assert task_label(task([window_result("Spike")], store="")) is None
