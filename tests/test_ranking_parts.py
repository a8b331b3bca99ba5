"""How a large project's ranking is split: the tasks most likely to matter first, then the others."""

import ls_backend.retrain as retrain
from ls_backend.project_state import rerank_version
from ls_backend.stores import WindowRef


def test_a_small_project_is_ranked_in_one_part():
    index = {t: WindowRef("s", f"w{t}") for t in range(10)}
    assert retrain.priority_parts(list(index), index, {}) == [list(index)]
    assert retrain.priority_parts([], index, {}) == []


def test_a_large_project_puts_the_previous_best_and_unseen_tasks_first(monkeypatch):
    monkeypatch.setattr(retrain, "PRIORITY_TASKS", 10)
    index = {t: WindowRef("s", f"w{t}") for t in range(100)}
    previous = {f"w{t}": [0.5 + t / 1000, 0] for t in range(100) if t != 42}  # w42 is new: not ranked before
    first, second = retrain.priority_parts(list(index), index, previous)
    assert len(first) == 10 and len(second) == 90 and set(first) | set(second) == set(index)
    assert {42, 0, 1, 2, 3} <= set(first)  # the new task, then the previous ranking's best half
    assert first == sorted(first) and second == sorted(second)


def test_a_kept_model_ranks_again_under_a_version_of_its_own():
    assert rerank_version("p3-v0002", None) == "p3-v0002"  # its first ranking
    assert rerank_version("p3-v0002", "p3-v0001") == "p3-v0002"
    assert rerank_version("p3-v0002", "p3-v0002") == "p3-v0002-r2"
    assert rerank_version("p3-v0002", "p3-v0002-r2-budget-spent") == "p3-v0002-r3"
    assert rerank_version("p3-v0002", "p3-v00021") == "p3-v0002"
