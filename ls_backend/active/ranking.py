"""From a :class:`~ls_backend.active.strategies.Ranking` to Label Studio predictions, and pools scored in batches.

Label Studio's "Uncertainty sampling" serves, among unlabeled tasks whose prediction has the project's
``model_version``, the least-labeled ``cluster`` first and the lowest ``score`` inside it; so a ranking is delivered
as one prediction per unlabeled task (:func:`ranking_predictions`) plus the project's ``model_version``.

Ranking tens of thousands of windows never holds the windows: :func:`score_pool` streams them from the window store
and keeps only what a strategy needs (a probability, a few MC draws, an embedding, a detector score per window)::

    def featurize(windows):
        out = model.predict_all(windows)
        return {"proba": out["proba"], "embeddings": out["embedding"], "detector_features": detector.features(windows)}

    pool = score_pool(store.iter_batches(batch_size=256), featurize)
    pool.arrays["detector_score"] = detector.score_features(pool.arrays.pop("detector_features"))
    ids, view = pool.view(labeled={"<window id>": 1, ...})
    ranking = make_strategy("mixed").rank(view, batch_size=20, rng=0)
    predictions = ranking_predictions(task_ids_of(ids), ranking, model_version="model-7+mixed")
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from .inputs import PoolView
from .strategies import Ranking

if TYPE_CHECKING:
    from ..model.estimator import SpikeDetector

logger = logging.getLogger(__name__)

Featurize = Callable[[np.ndarray], Mapping[str, np.ndarray]]
MC_DRAWS = 8  # MC-dropout passes for BALD / query-by-committee
_LABELED_FIELDS = {"embeddings": "labeled_embeddings"}  # per-window arrays also wanted for labeled windows


def ranking_predictions(
    task_ids: Sequence[int],
    ranking: Ranking,
    model_version: str,
    results: Sequence[list[dict]] | None = None,
    exhausted: bool = False,
) -> list[dict]:
    """One Label Studio prediction per task: ``{"task", "score", "cluster", "model_version", "result"}``.

    ``task_ids[i]`` is the task of pool window ``i``; ``results[i]`` its pre-annotation (regions), empty by default.
    ``exhausted=True`` (the labeling budget is spent) gives every task score 1.0 and cluster 0: nothing is urgent.
    """
    n = len(ranking.score)
    if len(task_ids) != n:
        raise ValueError(f"{len(task_ids)} task ids for a ranking of {n} windows")
    if results is not None and len(results) != n:
        raise ValueError(f"{len(results)} results for a ranking of {n} windows")
    if not model_version:
        raise ValueError("model_version must be a non-empty string")
    score = np.ones(n) if exhausted else ranking.score
    cluster = np.zeros(n, np.int64) if exhausted else ranking.cluster
    return [
        {
            "task": int(task_ids[i]),
            "score": float(score[i]),
            "cluster": int(cluster[i]),
            "model_version": str(model_version),
            "result": list(results[i]) if results is not None else [],
        }
        for i in range(n)
    ]


@dataclass
class ScoredPool:
    """Window ids and the small per-window arrays computed for them, in the same order."""

    ids: list[str]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def view(
        self, labeled: Mapping[str, float] | None = None, reference_embeddings: np.ndarray | None = None
    ) -> tuple[list[str], PoolView]:
        """The unlabeled windows' ids and their :class:`PoolView`; the ``labeled`` windows (id -> label, 0/1 or soft)
        give ``labeled_embeddings`` and ``labeled_y``. Ids of ``labeled`` that were not scored are ignored."""
        labeled = dict(labeled or {})
        is_labeled = np.array([wid in labeled for wid in self.ids], bool)
        unlabeled_ids = [wid for wid, known in zip(self.ids, is_labeled) if not known]
        per_window = {key: value[~is_labeled] for key, value in self.arrays.items()}
        extra: dict[str, np.ndarray] = {}
        if is_labeled.any():
            for key, target in _LABELED_FIELDS.items():
                if key in self.arrays:
                    extra[target] = self.arrays[key][is_labeled]
            extra["labeled_y"] = np.array([labeled[wid] for wid in np.asarray(self.ids)[is_labeled]], np.float64)
        pool = PoolView(**per_window, **extra, reference_embeddings=reference_embeddings,
                        n_windows=len(unlabeled_ids))
        return unlabeled_ids, pool


def model_features(
    model: SpikeDetector, windows: np.ndarray, n_draws: int = 0, seed: int | None = None
) -> dict[str, np.ndarray]:
    """A :data:`Featurize` for a fitted model: ``proba`` [b] and ``embeddings`` [b, width]; with ``n_draws`` >= 2
    also ``mc_proba`` [b, n_draws], the MC-dropout draws BALD and query-by-committee read (the transpose of
    :meth:`SpikeDetector.mc_draws`)."""
    out = model.predict_all(windows)
    arrays = {"proba": out["proba"], "embeddings": out["embedding"]}
    if n_draws:
        arrays["mc_proba"] = model.mc_draws(windows, n_draws, seed).T
    return arrays


def score_pool(
    batches: Iterable[tuple[Sequence[str], np.ndarray]],
    featurize: Featurize,
    total: int | None = None,
    progress: bool = False,
) -> ScoredPool:
    """Run ``featurize(windows) -> {name: [b, ...] array}`` over ``(ids, windows)`` batches (e.g.
    ``WindowStore.iter_batches``) and keep only its outputs: memory grows with the small arrays, not the windows."""
    ids: list[str] = []
    parts: dict[str, list[np.ndarray]] = {}
    for batch_ids, windows in tqdm(batches, total=total, disable=not progress, desc="scoring", unit="batch"):
        out = featurize(windows)
        if parts and set(out) != set(parts):
            raise ValueError(f"featurize returned {sorted(out)} for one batch and {sorted(parts)} for another")
        for key, value in out.items():
            value = np.asarray(value)
            if len(value) != len(batch_ids):
                raise ValueError(f"featurize()[{key!r}] has {len(value)} rows for a batch of {len(batch_ids)} windows")
            parts.setdefault(key, []).append(value)
        ids.extend(batch_ids)
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    logger.info("scored %d windows: %s", len(ids), ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    return ScoredPool(ids, arrays)
