"""Window sets: format round trips, event labelling, export from stores, the synthetic set through the real pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from converters.readers.base import Annotation
from converters.windowset import (
    WindowSet,
    concatenate,
    export_windowset,
    label_windows,
    load_windowset,
    save_windowset,
    synthetic_windowset,
)


def _small_set(n: int = 6, n_chans: int = 3, n_times: int = 32, groups: bool = True) -> WindowSet:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, n_chans, n_times)).astype(np.float32)
    X[0, -1] = np.nan  # an absent channel
    y = np.array([0, 1, 0.5, 0, 1, 0][:n], np.float32)
    dense = rng.random((n, n_times)).astype(np.float32)
    return WindowSet(X, y, 256.0, np.array(["P1"] * (n // 2) + ["P2"] * (n - n // 2)) if groups else None, dense)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
@pytest.mark.parametrize("groups", [True, False])
def test_round_trip(tmp_path, suffix, groups):
    ws = _small_set(groups=groups)
    path = save_windowset(ws, tmp_path / f"set{suffix}")
    back = load_windowset(path)
    np.testing.assert_array_equal(back.X, ws.X)  # NaN channels survive
    np.testing.assert_array_equal(back.y, ws.y)
    np.testing.assert_array_equal(back.y_dense, ws.y_dense)
    assert back.sfreq == 256.0
    if groups:
        assert list(back.groups) == list(ws.groups)
    else:
        assert back.groups is None
    assert not list(tmp_path.glob("*.tmp"))


def test_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="y must be in"):
        WindowSet(np.zeros((2, 1, 4)), np.array([0, 2]), 256.0)
    with pytest.raises(ValueError, match="n_chans"):
        WindowSet(np.zeros((2, 4)), np.array([0, 1]), 256.0)
    with pytest.raises(ValueError, match="must end in"):
        save_windowset(_small_set(), tmp_path / "set.csv")
    np.savez(tmp_path / "partial.npz", X=np.zeros((1, 1, 4), np.float32))
    with pytest.raises(ValueError, match="lacks y, sfreq"):
        load_windowset(tmp_path / "partial.npz")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="junk.h5"):
        load_windowset(tmp_path / "junk.h5")


def test_subset_group_concatenate_pads_with_nan():
    a = WindowSet(np.ones((2, 3, 8)), np.array([0, 1]), 256.0, np.array(["A", "A"]))
    b = WindowSet(np.zeros((1, 5, 8)), np.array([1]), 256.0, np.array(["B"]))
    ws = concatenate([a, b])
    assert ws.X.shape == (3, 5, 8)
    assert np.isnan(ws.X[:2, 3:]).all() and np.isfinite(ws.X[2]).all()
    assert len(ws.group("B")) == 1 and ws.group("A").y.tolist() == [0, 1]
    with pytest.raises(ValueError, match="differ"):
        concatenate([a, WindowSet(np.ones((1, 3, 16)), np.array([0]), 256.0)])


def test_label_windows_from_events():
    sfreq, n_times = 100.0, 100  # 1 s windows
    onsets = np.array([0.0, 1.0, 2.0, 3.0])
    events = [
        Annotation(0.5, 0.1, "spike"),  # inside window 0
        Annotation(1.96, 0.1, "sharp_wave"),  # 40 % in window 1 (negative), 60 % in window 2 (positive)
        Annotation(3.2, 0.3, "artifact_pop"),  # an artifact: a negative
        Annotation(2.99, 0.1, "spike"),  # a 10 % sliver in window 2, 90 % in window 3
    ]
    y, dense = label_windows(events, onsets, n_times, sfreq)
    assert y.tolist() == [1, 0, 1, 1]
    y, dense = label_windows(events[2:], onsets, n_times, sfreq)
    assert y.tolist() == [0, 0, 0, 1]  # the sliver does not make window 2 positive; the artifact is negative
    assert dense[2, -1] == pytest.approx(1.0) and dense[2, :-1].sum() == 0  # but its samples are marked
    assert dense[3, :9].sum() == pytest.approx(9.0) and dense[3, 20:50].sum() == 0
    y, _ = label_windows([Annotation(1.5, 0.0, "XLSpike")], onsets, n_times, sfreq)  # a point marker
    assert y.tolist() == [0, 1, 0, 0]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return synthetic_windowset(("A", "C"), minutes={"A": 1.0, "C": 0.5}, cache_dir=cache), cache


def test_synthetic_windowset_through_real_pipeline(synthetic, tmp_path):
    ws, cache = synthetic
    assert ws.sfreq == 256.0 and ws.X.shape[2] == 256
    assert sorted(set(ws.groups)) == ["A", "C"]
    a, c = ws.group("A"), ws.group("C")
    assert len(a) == 60 and len(c) == 30
    # bipolar montage: A has shafts of 8, 6 and 10 contacts -> 21 derivations; C 5 + 5 -> 8 (rest NaN)
    assert np.isfinite(a.X[:, :, 0]).all() and ws.X.shape[1] == 21
    assert np.isfinite(c.X[:, :8]).all() and np.isnan(c.X[:, 8:]).all()
    assert 0 < a.y.mean() < 0.5 and c.y.sum() >= 1
    assert ((ws.y_dense.max(axis=1) > 0) >= (ws.y == 1)).all()  # a positive window has marked samples
    # robust scaling: the background is about unit scale
    assert 0.5 < np.nanmedian(np.abs(a.X)) / 0.6745 < 2.0
    again = synthetic_windowset(("A", "C"), minutes={"A": 1.0, "C": 0.5}, cache_dir=cache, out=tmp_path / "s.h5")
    np.testing.assert_array_equal(again.X, ws.X)  # from the cache
    assert load_windowset(tmp_path / "s.h5").X.shape == ws.X.shape


def test_export_from_stores(tmp_path):
    from converters.convert import convert_recording
    from converters.synthetic import PATIENTS, write_edf
    from converters.windows import WindowParams

    stores = {}
    for name, seconds in (("B", 40), ("C", 20)):
        edf = write_edf(tmp_path / f"{name}.edf", PATIENTS[name], seconds)
        stores[name] = convert_recording(edf, tmp_path / f"{name}.h5", window_params=WindowParams(2.0)).store
    ws = export_windowset(stores, tmp_path / "export.npz")
    assert ws.X.shape == (30, 12, 512) and list(np.unique(ws.groups)) == ["B", "C"]
    assert ws.y.sum() >= 1
    assert load_windowset(tmp_path / "export.npz").y.tolist() == ws.y.tolist()


def test_cli(tmp_path, capsys):
    from converters.windowset import main

    assert main(["synthetic", str(tmp_path / "s.npz"), "--patients", "C", "--minutes", "0.25"]) == 0
    assert "15 windows" in capsys.readouterr().out
    assert load_windowset(tmp_path / "s.npz").X.shape == (15, 8, 256)
