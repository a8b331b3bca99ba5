"""Spike regions drawn in a page's context label the task windows they overlap; each window's own answer wins.

The recording: 8 windows of 2 s (256 Hz), windows 0-6 imported as tasks 1-7 (window 7 is no task). A page shows its
window with 4 s of context on each side, so task 3 (window 2, 4-6 s) shows 0-10 s.
"""

import re
import uuid

import numpy as np
import pytest

from converters import studio
from converters.labelconfig import make_label_config, region_result, window_result
from converters.tasks import make_tasks, page_layout
from converters.windows import StoreWriter, WindowStore, window_ids, window_starts
from ls_backend.budget.plan import Budget
from ls_backend.budget.render import text_table
from ls_backend.budget.status import compute_status
from ls_backend.config import Settings
from ls_backend.labels import fetch_labels, project_labels
from ls_backend.project_state import ProjectState
from ls_backend.retrain import training_set
from ls_backend.stores import StoreCache, WindowRef
from ls_backend.task_index import TaskWindows

SFREQ, WINDOW, N_WINDOWS, STORE = 256.0, 512, 8, "P/rec.h5"


@pytest.fixture
def store_dir(tmp_path):
    writer = StoreWriter(tmp_path / STORE, 2, N_WINDOWS * WINDOW)
    writer.append(np.zeros((2, N_WINDOWS * WINDOW), np.float32))
    starts = window_starts(N_WINDOWS * WINDOW, WINDOW, WINDOW)
    writer.write_index(window_ids("0" * 64, starts, SFREQ, WINDOW), starts)
    writer.write_annotations([])
    writer.set_attrs(sfreq=SFREQ, ch_names=["C3-P3", "C4-P4"], window_samples=WINDOW,
                     channel_scale_uv=np.ones(2, np.float32), stride_samples=WINDOW, provenance={})  # fmt: skip
    writer.commit()
    return tmp_path


def ids(store_dir):
    return list(StoreCache(store_dir).get(STORE).ids)


def task(store_dir, row, *annotations):
    """The task of window ``row`` (task id row + 1) with its clinicians' results."""
    data = {"window_id": ids(store_dir)[row], "store": STORE, "onset_seconds": 2.0 * row, "duration_seconds": 2.0}
    annotated = [{"result": r, "completed_by": k + 1, "lead_time": 10.0} for k, r in enumerate(annotations)]
    return {"id": row + 1, "data": data, "annotations": annotated}


def spike(start, end, label="Spike"):
    return region_result(start, end, label, f"r{start}")


class FakeClient:
    def __init__(self, tasks):
        self.tasks = self
        self.listed = tasks

    def list(self, **query):
        return iter(self.listed)


def labels_of(store_dir, *tasks):
    index = {row + 1: WindowRef(STORE, window_id) for row, window_id in enumerate(ids(store_dir)[:7])}
    labels = fetch_labels(FakeClient(list(tasks)), 1, TaskWindows(index, StoreCache(store_dir)))
    return {label.task_id: label for label in labels}


def test_a_spike_drawn_in_the_context_labels_the_windows_it_overlaps(store_dir):
    drawn = [window_result("No spike"), spike(6.5, 6.6), spike(7.95, 8.05, "Sharp wave"), spike(1.0, 1.1, "Artifact")]
    labels = labels_of(store_dir, task(store_dir, 2, drawn))
    assert labels[3].target == 0.0 and labels[3].regions == [] and not labels[3].from_context  # its own answer
    assert labels[4].target == 1.0 and labels[4].regions == [(6.5, 6.6, 1.0), (7.95, 8.05, 1.0)]
    assert labels[4].context_of == [3] and labels[4].onset_seconds == 6.0 and labels[4].window_id == ids(store_dir)[3]
    assert labels[5].regions == [(7.95, 8.05, 1.0)] and labels[5].context_of == [3]  # straddles windows 3 and 4
    assert sorted(labels) == [3, 4, 5]  # the artifact labels nothing
    assert labels[4].annotators == [] and labels[4].lead_times == []  # nobody answered it: no label spent


def test_a_window_answered_on_its_own_task_keeps_its_answer(store_dir):
    own = task(store_dir, 3, [window_result("No spike")])
    labels = labels_of(store_dir, task(store_dir, 2, [window_result("Spike"), spike(6.5, 6.6)]), own)
    assert labels[4].target == 0.0 and not labels[4].from_context and labels[4].annotators == [1]
    assert sorted(labels) == [3, 4]


def test_a_region_partly_in_the_window_answers_it_and_labels_the_neighbour(store_dir):
    labels = labels_of(store_dir, task(store_dir, 2, [spike(5.9, 6.1)]))  # no choice: the region answers Spike
    assert labels[3].target == 1.0 and labels[3].regions == [(5.9, 6.1, 1.0)] and labels[3].annotators == [1]
    assert labels[4].regions == [(5.9, 6.1, 1.0)] and labels[4].context_of == [3]


def test_two_pages_showing_one_spike_give_one_label(store_dir):
    seen = [window_result("No spike"), spike(8.5, 8.6)]
    labels = labels_of(store_dir, task(store_dir, 2, seen), task(store_dir, 5, seen), task(store_dir, 3, seen))
    assert labels[5].regions == [(8.5, 8.6, 1.0)] and labels[5].context_of == [3, 4, 6]
    assert [labels[k].target for k in (3, 4, 5, 6)] == [0.0, 0.0, 1.0, 0.0]


def test_only_windows_that_are_tasks_are_labeled(store_dir):
    labels = labels_of(store_dir, task(store_dir, 6, [window_result("No spike"), spike(14.5, 14.6)]))
    assert sorted(labels) == [7]  # window 7 (14-16 s) is in the store but was not imported as a task


def test_a_page_with_only_a_context_spike_labels_the_neighbour_not_itself(store_dir):
    labels = labels_of(store_dir, task(store_dir, 2, [spike(2.5, 2.6)]))
    assert sorted(labels) == [2] and labels[2].context_of == [3]


def test_without_task_windows_only_answered_tasks_count(store_dir):
    tasks = [task(store_dir, 2, [window_result("No spike"), spike(6.5, 6.6)])]
    assert [label.task_id for label in fetch_labels(FakeClient(tasks), 1)] == [3]


def test_context_labels_train_their_windows_and_the_budget_counts_them_apart(store_dir):
    drawn = [window_result("No spike"), spike(6.5, 6.6)]
    labels = list(labels_of(store_dir, task(store_dir, 2, drawn, [window_result("Unsure")])).values())
    labeled = training_set(Settings(window_store_dir=store_dir), labels)
    assert labeled.ids.tolist() == [3, 4] and labeled.y.tolist() == [0.25, 1.0]
    t = 6.0 + (np.arange(WINDOW) + 0.5) / SFREQ
    assert labeled.dense[1][(t > 6.52) & (t < 6.58)].min() == 1.0 and labeled.dense[1][t < 6.4].max() == 0.0
    status = compute_status("1", "P", Budget(10), labels, [], {1: "a@x.org", 2: "b@x.org"})
    assert (status.spent, status.labeled_windows, status.context_windows, status.spike_windows) == (2, 2, 1, 1)
    assert status.remaining == 8 and {c.name: c.labels for c in status.clinicians} == {"a@x.org": 1, "b@x.org": 1}
    assert re.search(
        r"Labels from context +1 windows \(spikes drawn in other tasks' context, free\)", text_table(status)
    )


def test_the_real_label_studio_gives_the_context_labels(label_studio, studio_client, store_dir, tmp_path):
    """Pages imported as the importer makes them, answered through the API, read back as the retraining reads them."""
    with WindowStore(store_dir / STORE) as store:
        pages = list(make_tasks(store, patient="P", recording="rec.edf", store_key=STORE, rows=range(7)))
    config = make_label_config(["C3-P3", "C4-P4"], page_layout([StoreCache(store_dir).get(STORE)]))
    project, _ = studio.get_or_create_project(studio_client, f"context {uuid.uuid4().hex[:8]}", config)
    try:
        created = studio.import_tasks(studio_client, project.id, pages, progress=False)
        drawn = [window_result("No spike"), spike(6.5, 6.6), spike(7.95, 8.05)]  # in window 3, and across 3 and 4
        studio_client.annotations.create(id=created[2], result=drawn, lead_time=12.0)
        studio_client.annotations.create(id=created[4], result=[window_result("No spike")], lead_time=5.0)
        labels = project_labels(studio_client, ProjectState.of(tmp_path / "models", project.id), store_dir)
    finally:
        studio.delete_project(studio_client, project.id)
    by_task = {label.task_id: label for label in labels}
    assert sorted(by_task) == [created[2], created[3], created[4]]
    assert by_task[created[2]].target == 0.0 and by_task[created[4]].target == 0.0  # their own answers
    context = by_task[created[3]]
    assert context.target == 1.0 and context.context_of == [created[2]] and context.annotators == []
    assert context.regions == [(6.5, 6.6, 1.0), (7.95, 8.05, 1.0)] and context.window_id == ids(store_dir)[3]
