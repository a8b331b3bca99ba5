"""Rankings as Label Studio predictions, and pools scored in batches from a window store."""

import json

import numpy as np
import pytest

from converters.windows import StoreWriter, WindowParams, WindowStore, window_ids, window_starts
from ls_backend.active.ranking import ranking_predictions, score_pool
from ls_backend.active.strategies import Ranking, make_strategy
from ls_backend.active.transients import TransientDetector

SFREQ = 256.0


def test_predictions_carry_score_cluster_and_version():
    ranking = Ranking.from_order(np.array([2, 0, 1]), "mixed", 1, cluster=np.array([4, 0, 4]))
    regions = [[{"type": "timeserieslabels", "value": {"start": 0.1, "end": 0.2}}], [], []]
    predictions = ranking_predictions([11, 12, 13], ranking, "m3+mixed", results=regions)
    assert predictions[2] == {"task": 13, "score": 0.0, "cluster": 4, "model_version": "m3+mixed", "result": []}
    assert [p["score"] for p in predictions] == [0.5, 1.0, 0.0]
    assert predictions[0]["result"] == regions[0]
    json.dumps(predictions)  # plain JSON types only


def test_exhausted_budget_makes_nothing_urgent():
    ranking = Ranking.from_order(np.array([1, 0]), "entropy", 1, cluster=np.array([3, 5]))
    predictions = ranking_predictions([7, 8], ranking, "v1", exhausted=True)
    assert [(p["score"], p["cluster"]) for p in predictions] == [(1.0, 0), (1.0, 0)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([1], None, "v"), "1 task ids for a ranking of 2 windows"),
        (([1, 2], [[]], "v"), "1 results for a ranking of 2 windows"),
        (([1, 2], None, ""), "model_version"),
    ],
)
def test_prediction_errors(args, message):
    ranking = Ranking.from_order(np.array([1, 0]), "random", 1)
    task_ids, results, version = args
    with pytest.raises(ValueError, match=message):
        ranking_predictions(task_ids, ranking, version, results=results)


def write_store(path, n_windows=40, n_chans=4, spikes=(3, 17, 29)):
    """A small window store of noise with a sharp transient in a few windows."""
    rng = np.random.default_rng(0)
    window, stride = WindowParams(2.0).samples(SFREQ)
    signal = rng.standard_normal((n_chans, n_windows * window)).astype(np.float32) * 30
    for k in spikes:
        signal[1, k * window + 200 : k * window + 210] += 400 * np.hanning(10)
    writer = StoreWriter(path, n_chans, signal.shape[1])
    writer.append(signal)
    starts = window_starts(signal.shape[1], window, stride)
    writer.write_index(window_ids("cd" * 32, starts, SFREQ, window), starts)
    writer.write_annotations([])
    writer.set_attrs(sfreq=SFREQ, ch_names=[f"A{i + 1}" for i in range(n_chans)],
                     channel_scale_uv=np.full(n_chans, 30.0, np.float32), window_samples=window,
                     stride_samples=stride, provenance={})
    writer.commit()
    return path


def test_score_pool_streams_the_store_and_keeps_only_small_arrays(tmp_path):
    detector = TransientDetector(sfreq=SFREQ)
    seen = []

    def featurize(windows):
        seen.append(len(windows))
        return {"embeddings": windows.std(axis=2), "detector_features": detector.features(windows)}

    with WindowStore(write_store(tmp_path / "rec.h5")) as store:
        pool = score_pool(store.iter_batches(batch_size=8), featurize, total=5)
        assert pool.ids == list(store.ids)
    assert max(seen) == 8 and sum(seen) == 40
    assert pool.arrays["embeddings"].shape == (40, 4)
    pool.arrays["detector_score"] = detector.score_features(pool.arrays.pop("detector_features"))
    assert set(np.argsort(-pool.arrays["detector_score"])[:3]) == {3, 17, 29}

    labeled = {pool.ids[3]: 1.0, pool.ids[0]: 0.0}
    ids, view = pool.view(labeled=labeled)
    assert len(ids) == 38 and pool.ids[3] not in ids
    assert view.labeled_embeddings.shape == (2, 4) and list(view.labeled_y) == [0.0, 1.0]
    ranking = make_strategy("cold_start").rank(view, batch_size=4, rng=0)
    assert {ids[i] for i in ranking.batch} >= {pool.ids[17], pool.ids[29]}
    predictions = ranking_predictions(list(range(100, 138)), ranking, "cold+detector")
    assert len(predictions) == 38 and min(p["score"] for p in predictions) == 0.0


def test_score_pool_rejects_inconsistent_featurizers():
    batches = [(["a", "b"], np.zeros((2, 1, 8))), (["c"], np.zeros((1, 1, 8)))]
    with pytest.raises(ValueError, match="has 1 rows for a batch of 2 windows"):
        score_pool(batches, lambda w: {"proba": np.zeros(1)})
    calls = iter([{"proba": np.zeros(2)}, {"other": np.zeros(1)}])
    with pytest.raises(ValueError, match="featurize returned"):
        score_pool(batches, lambda w: next(calls))
