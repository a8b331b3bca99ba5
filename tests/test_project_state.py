"""One project's files in MODEL_DIR, version names, and the module map that keeps serving and retraining apart."""

import logging
import os
import subprocess
import sys

import pytest

from ls_backend.project_state import (
    COLD_START_VERSION,
    ProjectState,
    is_ranking_of,
    model_version_name,
    project_keys,
    read_json,
)


def test_a_project_state_is_its_folder_and_refuses_what_is_not_a_project_id(tmp_path):
    state = ProjectState.of(tmp_path, "12.1700000000")
    assert state.key == "12" and state.dir == tmp_path / "12"
    assert state.ranking == tmp_path / "12" / "ranking.json"
    assert state.checkpoint("p12-v0001") == state.checkpoints / "p12-v0001.pt"
    with pytest.raises(ValueError, match="project must be a Label Studio project id, got '../x'"):
        ProjectState.of(tmp_path, "../x")


def test_the_live_ranking_round_trips_and_an_unreadable_one_is_none(tmp_path, caplog):
    state = ProjectState.of(tmp_path, 3)
    assert state.live_ranking() == {}
    state.write_ranking("p3-v0001", COLD_START_VERSION, {"w1": [0.1, 2]})
    written = {"version": "p3-v0001", "previous_version": "cold-start", "windows": {"w1": [0.1, 2]}}
    assert state.live_ranking() == written
    assert [p.name for p in state.dir.iterdir()] == ["ranking.json"]  # no temporary file left behind
    for bad in ("{half", "[1, 2]"):
        state.ranking.write_text(bad)
        with caplog.at_level(logging.WARNING):
            assert state.live_ranking() == {} and read_json(state.ranking) is None
        assert str(state.ranking) in caplog.text
        caplog.clear()


def test_project_keys_are_the_id_folders_only(tmp_path):
    for name in ("7", "12", "3x", "backup"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file")
    assert project_keys(tmp_path) == ["12", "7"]


def test_versions_name_their_project_and_model():
    state = ProjectState.of("models", 3)
    assert model_version_name("3", 2) == "p3-v0002"
    assert state.owns_version("p3-v0002-r2") and state.owns_version(COLD_START_VERSION)
    assert not state.owns_version("p31-v0001") and not state.owns_version(None) and not state.owns_version("")
    assert is_ranking_of("p3-v0002-r2-budget-spent", "p3-v0002") and is_ranking_of("p3-v0002", "p3-v0002")
    assert not is_ranking_of("p3-v00021", "p3-v0002") and not is_ranking_of("cold-start", "p3-v0002")


@pytest.mark.parametrize(
    "module, absent",
    [("ls_backend.retrain", "ls_backend.engine"), ("ls_backend.engine", "ls_backend.retrain"),
     ("ls_backend.app", "ls_backend.retrain")],
)
def test_serving_and_retraining_do_not_import_each_other(module, absent):
    code = f"import sys, {module}; assert {absent!r} not in sys.modules"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
