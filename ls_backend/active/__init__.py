"""Active learning: which windows a clinician should label next, as rankings Label Studio can serve.

``inputs.PoolView`` (small per-window arrays: probabilities, MC draws, embeddings, detector scores) ->
``strategies`` (``make_strategy(name, **params).rank(pool, batch_size, rng) -> Ranking``; ``measures`` and
``diversity`` are their building blocks) -> ``ranking`` (Label Studio predictions; pools scored in batches from the
window store). ``transients`` is the classical transient (spike) detector that orders windows before any label.
"""
