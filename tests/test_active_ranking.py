"""Rankings as Label Studio predictions, and pools scored in batches from a window store."""

import json

import numpy as np
import pytest

from converters.windows import StoreWriter, WindowParams, WindowStore, window_ids, window_starts
from ls_backend.active.ranking import ranking_predictions
from ls_backend.active.strategies import Ranking
from ls_backend.loop import Labeled, PoolScorer, rank

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


def test_a_store_streamed_in_batches_is_ranked_from_its_small_arrays(tmp_path):
    with WindowStore(write_store(tmp_path / "rec.h5")) as store:
        X = store.read_windows(list(store.ids))
    scorer = PoolScorer(None, SFREQ)
    for first in range(0, 40, 8):
        assert scorer.add(X[first : first + 8]) is None  # no model: no outputs to pre-annotate
    view = scorer.view()
    assert set(np.argsort(-view.detector_score)[:3]) == {3, 17, 29} and view.embeddings.shape == (40, 4 * 2)

    free = np.setdiff1d(np.arange(40), [0, 3])  # window 3 (a spike) and 0 are labeled
    labeled = Labeled(X[[0, 3]], np.array([0.0, 1.0], np.float32), sfreq=SFREQ)
    promised = scorer.view(labeled).labeled_detector_score  # as the pool scored them
    np.testing.assert_allclose(promised, view.detector_score[[0, 3]], rtol=1e-6)
    batches = (X[free][first : first + 8] for first in range(0, len(free), 8))
    ranking = rank(None, batches, labeled, "cold_start", 4, 0, SFREQ)
    assert {int(free[i]) for i in ranking.batch} >= {17, 29}
    predictions = ranking_predictions(list(range(100, 138)), ranking, "cold+detector")
    assert len(predictions) == 38 and min(p["score"] for p in predictions) == 0.0
