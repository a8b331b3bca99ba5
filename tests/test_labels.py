"""Annotations -> targets: several clinicians, "Unsure", regions, cancelled annotations."""

from converters.labelconfig import region_result, window_result
from ls_backend.labels import annotation_choice, fetch_labels, task_label


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


# -- unknown names: only the annotation that has one loses it ------------------------------------------------


def renamed(choice):
    """A window answer with a choice the backend does not know (a renamed choice in the labeling config)."""
    return {"from_name": "window", "to_name": "ts", "type": "choices", "value": {"choices": [choice]}}


def test_an_unknown_choice_drops_only_that_annotation_and_is_logged_with_the_task(caplog):
    label = task_label(task([window_result("Spike")], [renamed("Spikey")], [window_result("No spike")]))
    assert label is not None and label.target == 0.5  # Spike and No spike: the renamed answer is left out
    assert label.annotators == [0, 2] and label.lead_times == [3.0, 3.0]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "window choice 'Spikey'" in warning and "task 5" in warning
    assert "['No spike', 'Spike', 'Unsure']" in warning


def test_an_unknown_choice_keeps_the_spike_regions_of_its_annotation():
    drawn = [renamed("Polyspike"), region_result(10.2, 10.3, "Spike", "r1")]
    label = task_label(task(drawn, [window_result("No spike")]))
    assert label.target == 0.5 and label.regions == [(10.2, 10.3, 0.5)]  # the region still says Spike


class FakeTasks:
    def __init__(self, tasks):
        self.tasks = tasks

    def list(self, **query):
        return iter(self.tasks)


class FakeClient:
    def __init__(self, tasks):
        self.tasks = FakeTasks(tasks)


def numbered(task_id, *annotations):
    return task(*annotations) | {"id": task_id}


def test_fetching_logs_each_unknown_name_once_with_its_tasks(caplog):
    tasks = [numbered(k, [renamed("Spikey")], [window_result("Spike")]) for k in (11, 12, 13)]
    tasks.append(numbered(14, [region_result(10.0, 10.1, "Polyspike", "r1"), window_result("Unsure")]))
    labels = fetch_labels(FakeClient(tasks), 1)
    assert [(lab.task_id, lab.target, lab.annotators) for lab in labels] == [
        (11, 1.0, [1]), (12, 1.0, [1]), (13, 1.0, [1]), (14, 0.5, [0])
    ]  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    choice, region = sorted(warnings, key=lambda w: "region" in w)
    assert "window choice 'Spikey' in 3 task(s) (task 11, 12, 13)" in choice
    assert "region label 'Polyspike' in 1 task(s) (task 14)" in region and "'Artifact'" in region


def test_a_task_whose_only_answer_is_unknown_gives_nothing():
    assert task_label(task([renamed("Spikey")])) is None


def test_a_task_read_twice_while_pages_shift_counts_once():
    first = numbered(21, [window_result("No spike")])
    again = numbered(21, [window_result("No spike")], [window_result("Spike")])  # a second answer came meanwhile
    labels = fetch_labels(FakeClient([first, numbered(22, [window_result("Spike")]), again]), 1)
    assert [(lab.task_id, lab.target, len(lab.annotators)) for lab in labels] == [(21, 0.5, 2), (22, 1.0, 1)]
