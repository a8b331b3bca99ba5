"""Window references and reading windows from the stores (by row, store by store), and the cached task index."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from converters import studio
from converters.windows import StoreWriter, WindowStore, window_ids, window_starts
from ls_backend.project_state import ProjectState
from ls_backend.stores import StoreCache, TaskInputError, WindowRef
from ls_backend.task_index import cached_task_index


def write_store(path, n_chans, offset):
    """A store of 4 windows of 512 samples whose window k holds the value offset + k everywhere."""
    writer = StoreWriter(path, n_chans, 2048)
    writer.append(np.repeat(offset + np.arange(4, dtype=np.float32), 512)[None].repeat(n_chans, 0))
    starts = window_starts(2048, 512, 512)
    ids = window_ids(f"{offset:064d}", starts, 256.0, 512)
    writer.write_index(ids, starts)
    writer.write_annotations([])
    writer.set_attrs(sfreq=256.0, ch_names=[f"C{i}" for i in range(n_chans)], window_samples=512,
                     channel_scale_uv=np.ones(n_chans, np.float32), stride_samples=512, provenance={})
    writer.commit()
    return ids


@pytest.fixture
def stores(tmp_path):
    return tmp_path, {"a.h5": write_store(tmp_path / "a.h5", 2, 0), "b.h5": write_store(tmp_path / "b.h5", 2, 10)}


def test_windows_come_back_in_the_order_asked_across_stores(stores):
    root, ids = stores
    refs = [WindowRef("b.h5", ids["b.h5"][2]), WindowRef("a.h5", ids["a.h5"][3]), WindowRef("b.h5", ids["b.h5"][0])]
    windows = StoreCache(root).read(refs, [7, 8, 9])
    assert windows.refs == refs and windows.X.shape == (3, 2, 512) and windows.sfreq == 256.0
    np.testing.assert_array_equal(windows.X[:, 0, 0], [12.0, 3.0, 10.0])
    np.testing.assert_allclose(windows.onset_seconds, [4.0, 6.0, 0.0])  # row * 512 samples / 256 Hz
    assert windows.ch_names == [["C0", "C1"]] * 3


def test_store_reads_by_rows_match_reads_by_ids(stores):
    root, ids = stores
    with WindowStore(root / "a.h5") as store:
        rows = store.rows([ids["a.h5"][1], ids["a.h5"][0]])
        np.testing.assert_array_equal(store.read_rows(rows), store.read_windows([ids["a.h5"][1], ids["a.h5"][0]]))


def test_a_bad_reference_names_its_task(stores):
    root, ids = stores
    cache = StoreCache(root)
    with pytest.raises(TaskInputError, match="task 5: data.store and data.window_id are required"):
        WindowRef.of_task({"id": 5, "data": {"store": "a.h5"}})
    with pytest.raises(TaskInputError, match="a task must be a JSON object"):
        WindowRef.of_task(["no"])
    with pytest.raises(TaskInputError, match="task 8: .*unknown window id"):
        cache.read([WindowRef("a.h5", ids["a.h5"][0]), WindowRef("a.h5", "nope")], [7, 8])
    with pytest.raises(TaskInputError, match="task 9: data.store '../x.h5' is outside WINDOW_STORE_DIR"):
        cache.row(WindowRef("../x.h5", "w"), 9)
    assert WindowRef.of_task({"id": 1, "data": {"store": "a.h5", "window_id": "w", "x": 1}}) == WindowRef("a.h5", "w")


def test_the_task_index_keeps_its_file_format_and_relists_a_bad_cache(tmp_path, monkeypatch):
    listed = []
    entries = {1: {"window_id": "w1", "store": "a.h5"}, 2: None}
    monkeypatch.setattr(studio, "task_index", lambda c, p, after_id=0: listed.append(after_id) or dict(entries))
    client = SimpleNamespace(projects=SimpleNamespace(get=lambda id: SimpleNamespace(task_number=2)))
    state = ProjectState.of(tmp_path, 4)
    assert cached_task_index(client, state) == {1: WindowRef("a.h5", "w1")} and listed == [0]
    assert json.loads(state.task_index.read_text()) == {"tasks": {"1": entries[1], "2": None}}
    assert cached_task_index(client, state) == {1: WindowRef("a.h5", "w1")} and listed == [0]  # from the cache
    state.task_index.write_text(json.dumps({"tasks": {"1": {"store": 3}, "2": None}}))
    assert cached_task_index(client, state) == {1: WindowRef("a.h5", "w1")} and listed == [0, 0]
