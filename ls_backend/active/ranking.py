"""From a :class:`~ls_backend.active.strategies.Ranking` to Label Studio predictions.

Label Studio's "Uncertainty sampling" serves, among unlabeled tasks whose prediction has the project's
``model_version``, the least-labeled ``cluster`` first and the lowest ``score`` inside it; so a ranking is delivered
as one prediction per unlabeled task (:func:`ranking_predictions`) plus the project's ``model_version``. The pool a
ranking is made from is scored batch by batch by :class:`ls_backend.loop.PoolScorer`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .strategies import Ranking

MC_DRAWS = 8  # MC-dropout passes for BALD / query-by-committee


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
