"""Active-learning strategies on synthetic arrays: each does what it promises, all share one contract."""

import numpy as np
import pytest
from sklearn.base import clone

from ls_backend.active.diversity import calibrated_prior, neighbour_vote
from ls_backend.active.inputs import PoolView
from ls_backend.active.measures import binary_entropy, domain_drift, embedding_drift, mutual_information
from ls_backend.active.strategies import (
    BALD,
    STRATEGIES,
    ColdStart,
    Entropy,
    KCenter,
    KMeansDiversity,
    Margin,
    Mixed,
    QueryByCommittee,
    Random,
    RankedBatch,
    Ranking,
    TransferAware,
    make_strategy,
    parse_strategy,
)

CENTRES = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [20, 20]], float)


def blobs(sizes=(200, 100, 60, 30, 10), spread=0.5, seed=0):
    """Well separated 2-D blobs; returns embeddings and each point's blob."""
    rng = np.random.default_rng(seed)
    blob = np.repeat(np.arange(len(sizes)), sizes)
    return CENTRES[blob] + spread * rng.standard_normal((len(blob), 2)), blob


def full_pool(n=400, seed=0):
    """A pool with every field filled (shapes as the model gives them)."""
    rng = np.random.default_rng(seed)
    emb, _ = blobs(sizes=(n // 4,) * 4, seed=seed)
    emb = np.hstack([emb, rng.standard_normal((len(emb), 6))])
    return PoolView(
        proba=rng.random(len(emb)),
        mc_proba=rng.random((len(emb), 8)),
        committee_proba=rng.random((len(emb), 5)),
        embeddings=emb,
        detector_score=rng.random(len(emb)),
        reference_embeddings=rng.standard_normal((300, 8)),
        labeled_embeddings=rng.standard_normal((12, 8)),
        labeled_y=np.r_[np.ones(2), np.zeros(10)],
    )


# ------------------------------------------------------------------ the contract every strategy keeps


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_ranks_the_whole_pool_consistently(name):
    pool = full_pool()
    ranking = make_strategy(name).rank(pool, batch_size=12, rng=3)
    n = pool.n
    assert ranking.name == name and ranking.batch_size == 12
    np.testing.assert_array_equal(np.sort(ranking.order), np.arange(n))
    assert ranking.score.shape == (n,) and ranking.score.min() >= 0 and ranking.score.max() <= 1
    assert np.all(np.diff(ranking.score[ranking.order]) > 0), "score must increase strictly along the order"
    assert ranking.cluster.shape == (n,) and ranking.cluster.dtype.kind == "i" and ranking.cluster.min() >= 0
    again = make_strategy(name).rank(pool, batch_size=12, rng=3)
    np.testing.assert_array_equal(ranking.order, again.order)
    np.testing.assert_array_equal(ranking.cluster, again.cluster)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_tiny_pools_and_large_batches(name):
    pool = full_pool()
    one = PoolView(**{k: (v[:1] if k in ("proba", "mc_proba", "committee_proba", "embeddings", "detector_score")
                          else v) for k, v in vars(pool).items() if k != "n_windows"})
    ranking = make_strategy(name).rank(one, batch_size=50, rng=0)
    assert list(ranking.order) == [0] and list(ranking.score) == [0.0] and ranking.batch_size == 1
    empty = make_strategy("random").rank(PoolView(n_windows=0), batch_size=5)
    assert len(empty.order) == 0 and len(empty.batch) == 0


def test_random_is_seeded_and_differs_between_seeds():
    pool = PoolView(n_windows=100)
    a, b = Random().rank(pool, 10, rng=1), Random().rank(pool, 10, rng=2)
    np.testing.assert_array_equal(a.order, Random().rank(pool, 10, rng=np.random.default_rng(1)).order)
    assert not np.array_equal(a.order, b.order)
    assert set(a.cluster) == {0}


def test_ranking_from_order_rejects_non_permutations():
    with pytest.raises(ValueError, match="permutation"):
        Ranking.from_order(np.array([0, 0, 1]), "x", 1)


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size"):
        Random().rank(PoolView(n_windows=3), batch_size=0)


# ------------------------------------------------------------------ inputs and registry


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"proba": np.zeros((3, 2))}, r"PoolView.proba: expected shape \[n\]"),
        ({"embeddings": np.zeros(3)}, r"PoolView.embeddings: expected shape \[n, d\]"),
        ({"proba": [0.1, 1.5]}, r"PoolView.proba: values must lie in \[0, 1\]"),
        ({"proba": [0.1, np.nan]}, "PoolView.proba: contains NaN"),
        ({"proba": np.zeros(3), "embeddings": np.zeros((4, 2))}, "disagree on the pool size"),
        ({"mc_proba": np.zeros((3, 1))}, "PoolView.mc_proba: expected shape .* at least 2 columns"),
        ({"embeddings": np.zeros((3, 2)), "reference_embeddings": np.zeros((5, 3))}, "embedding widths d disagree"),
        ({"proba": np.zeros(3), "labeled_embeddings": np.zeros((2, 2)), "labeled_y": [1, 0, 1]},
         r"PoolView.labeled_y: expected shape \[k\] with k = 2"),
        ({}, "at least one per-window array"),
    ],
)
def test_pool_view_validates_shapes_with_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PoolView(**kwargs)


@pytest.mark.parametrize(
    ("strategy", "pool", "field"),
    [
        (Entropy(), PoolView(n_windows=5), "proba"),
        (BALD(), PoolView(proba=np.full(5, 0.5)), "mc_proba"),
        (QueryByCommittee(), PoolView(proba=np.full(5, 0.5)), "committee_proba"),
        (KCenter(), PoolView(proba=np.full(5, 0.5)), "embeddings"),
        (KMeansDiversity(), PoolView(proba=np.full(5, 0.5)), "embeddings"),
        (ColdStart(), PoolView(embeddings=np.zeros((5, 2))), "detector_score"),
        (TransferAware(), PoolView(embeddings=np.zeros((5, 2))), "reference_embeddings"),
    ],
)
def test_missing_inputs_are_named(strategy, pool, field):
    with pytest.raises(ValueError, match=f"{strategy.name} needs PoolView.{field}"):
        strategy.rank(pool, 2)


def test_registry_and_make_strategy():
    assert make_strategy().name == "mixed"
    assert isinstance(make_strategy("qbc", kind="kl"), QueryByCommittee)
    assert make_strategy("mixed", positive_share=0.4).get_params()["positive_share"] == 0.4
    assert "ColdStart(" in repr(make_strategy("cold_start"))
    changed = make_strategy("mixed", positive_share=0.4)
    assert repr(changed) == "Mixed(positive_share=0.4)"  # scikit-learn's repr: the parameters that differ
    assert clone(changed).get_params() == changed.get_params() and clone(changed) is not changed
    assert changed.set_params(n_neighbors=5).n_neighbors == 5
    with pytest.raises(ValueError, match="unknown active-learning strategy 'nope'; known: bald, cold_start"):
        make_strategy("nope")
    with pytest.raises(ValueError, match="strategy 'entropy' has no parameter"):
        make_strategy("entropy", n_clusters=3)
    with pytest.raises(ValueError, match="kind must be one of"):
        QueryByCommittee(kind="bogus").rank(PoolView(committee_proba=np.zeros((3, 2))), 1)


def test_strategy_specs_carry_parameters():
    """``name:param=value,...`` (the replay benchmark compares settings of one strategy side by side with them)."""
    assert parse_strategy("mixed") == ("mixed", {})
    spec = "mixed:positive_share=0.5,search_neighbors=none,n_clusters=4,uncertainty=bald"
    assert parse_strategy(spec) == (
        "mixed", {"positive_share": 0.5, "search_neighbors": None, "n_clusters": 4, "uncertainty": "bald"}
    )
    made = make_strategy("mixed:positive_share=0.5,search_neighbors=none", n_clusters=3)
    assert (made.positive_share, made.search_neighbors, made.n_clusters) == (0.5, None, 3)
    with pytest.raises(ValueError, match=r"strategy 'mixed:oops': expected name:param=value"):
        make_strategy("mixed:oops")
    with pytest.raises(ValueError, match="strategy 'kcenter' has no parameter"):
        make_strategy("kcenter:search_neighbors=3")


# ------------------------------------------------------------------ uncertainty and consensus


def test_entropy_and_margin_pick_the_most_uncertain_first():
    proba = np.array([0.01, 0.99, 0.3, 0.52, 0.8, 0.45, 0.0])
    for strategy in (Entropy(), Margin()):
        ranking = strategy.rank(PoolView(proba=proba), batch_size=2, rng=0)
        assert list(ranking.order[:3]) == [3, 5, 2]
        assert set(ranking.order[-2:]) == {0, 6} or set(ranking.order[-2:]) == {6, 1}
    assert binary_entropy(np.array([0.5]))[0] == pytest.approx(1.0)


def test_entropy_falls_back_to_the_mean_of_mc_draws():
    mc = np.array([[0.1, 0.1], [0.4, 0.6], [0.9, 0.95]])
    assert Entropy().rank(PoolView(mc_proba=mc), 1).order[0] == 1


def test_bald_prefers_disagreement_among_mc_samples():
    agree = np.full((50, 10), 0.5)  # every pass says 0.5: aleatoric, nothing to learn
    disagree = np.tile([0.05, 0.95], (50, 5))  # confident passes that contradict each other
    mc = np.vstack([agree, disagree])
    ranking = BALD().rank(PoolView(mc_proba=mc), batch_size=10, rng=0)
    assert set(ranking.order[:50]) == set(range(50, 100))
    entropy = Entropy().rank(PoolView(mc_proba=mc), batch_size=10, rng=0)
    assert len(set(entropy.order[:50]) & set(range(50, 100))) < 50  # entropy of the mean cannot tell them apart


def test_query_by_committee_vote_entropy_and_kl():
    committee = np.array([
        [0.9, 0.9, 0.9, 0.9],  # all agree
        [0.9, 0.9, 0.1, 0.1],  # split votes
        [0.6, 0.6, 0.6, 0.4],  # 3 against 1, mild
        [0.99, 0.99, 0.99, 0.01],  # 3 against 1, strong
    ])
    pool = PoolView(committee_proba=committee)
    assert list(QueryByCommittee("vote_entropy").rank(pool, 1).order) == [1, 3, 2, 0]
    kl = QueryByCommittee("kl").rank(pool, 1)
    np.testing.assert_array_equal(kl.order, np.argsort(-mutual_information(committee), kind="stable"))
    mc_only = QueryByCommittee("kl").rank(PoolView(mc_proba=committee), 1)
    np.testing.assert_array_equal(mc_only.order, kl.order)


# ------------------------------------------------------------------ diversity


def test_k_center_covers_every_cluster():
    emb, blob = blobs()
    ranking = KCenter().rank(PoolView(embeddings=emb), batch_size=5, rng=0)
    assert sorted(blob[ranking.batch]) == [0, 1, 2, 3, 4]
    assert len(np.unique(ranking.cluster)) == 5
    assert all(len(np.unique(ranking.cluster[blob == b])) == 1 for b in range(5))  # each blob is one group


def test_k_center_skips_what_is_already_labeled():
    emb, blob = blobs()
    labeled = emb[blob <= 1][:5]
    ranking = KCenter().rank(PoolView(embeddings=emb, labeled_embeddings=labeled), batch_size=3, rng=0)
    assert sorted(blob[ranking.batch]) == [2, 3, 4]


def test_k_means_diversity_takes_the_typical_window_of_each_cluster():
    emb, blob = blobs(spread=1.0)
    ranking = KMeansDiversity(n_clusters=5).rank(PoolView(embeddings=emb), batch_size=5, rng=0)
    assert sorted(blob[ranking.batch]) == [0, 1, 2, 3, 4]
    dist = np.linalg.norm(emb - CENTRES[blob], axis=1)
    for i in ranking.batch:  # typical: nearer its centre than most of its blob
        assert dist[i] <= np.quantile(dist[blob == blob[i]], 0.5)
    # round-robin: the next five are again one per cluster
    assert sorted(blob[ranking.order[5:10]]) == [0, 1, 2, 3, 4]


def test_k_means_diversity_serves_the_least_labeled_cluster_first():
    emb, blob = blobs(spread=1.0)
    labeled = np.vstack([emb[blob == b][:3] for b in (0, 1, 2, 3)])  # blob 4 has no labels yet
    ranking = KMeansDiversity(n_clusters=5).rank(PoolView(embeddings=emb, labeled_embeddings=labeled), 5, rng=0)
    assert blob[ranking.order[0]] == 4


# ------------------------------------------------------------------ mixed (the default)


def mixed_pool(seed=0):
    """Background blobs with uncertain windows, many exact duplicates of one uncertain window, and a small rare
    cluster of confident positives (spikes)."""
    rng = np.random.default_rng(seed)
    emb, blob = blobs(sizes=(300, 200, 150, 100), spread=1.5, seed=seed)
    proba = rng.uniform(0.0, 0.2, len(emb))
    proba[:40] = 0.5  # uncertain windows in blob 0
    emb[:40] = emb[0]  # ... and all the same window: near-duplicates
    spikes = CENTRES[4] + 0.5 * rng.standard_normal((8, 2))
    return PoolView(embeddings=np.vstack([emb, spikes]), proba=np.r_[proba, rng.uniform(0.9, 0.99, 8)]), len(emb)


def test_mixed_batch_has_no_near_duplicates_and_includes_likely_positives():
    pool, n_background = mixed_pool()
    ranking = Mixed().rank(pool, batch_size=12, rng=0)
    batch = ranking.batch
    assert len(set(batch) & set(range(40))) == 1, "one of the 40 duplicates is enough"
    spikes = [i for i in batch if i >= n_background]
    assert len(spikes) >= 3  # a quarter of the batch reserved for likely positives
    dist = np.linalg.norm(pool.embeddings[batch][:, None] - pool.embeddings[batch][None], axis=2)
    assert dist[np.triu_indices(len(batch), 1)].min() > 0.05
    # the reserved positives are groups of their own, so Label Studio serves them without spreading them out
    assert len(set(ranking.cluster[spikes])) == len(spikes)


def test_mixed_covers_the_clusters_with_the_rest_of_the_batch():
    pool, n_background = mixed_pool()
    _, blob = blobs(sizes=(300, 200, 150, 100), spread=1.5)
    ranking = Mixed(n_clusters=4).rank(pool, batch_size=8, rng=0)
    rest = [i for i in ranking.batch if i < n_background]
    assert set(blob[rest]) == {0, 1, 2, 3}


def test_mixed_class_balance_stops_reserving_when_positives_are_plentiful():
    pool, n_background = mixed_pool()
    balanced = PoolView(embeddings=pool.embeddings, proba=pool.proba,
                        labeled_embeddings=np.full((10, 2), 50.0), labeled_y=np.r_[np.ones(5), np.zeros(5)])
    ranking = Mixed(positive_share=0.25).rank(balanced, batch_size=12, rng=0)
    assert sum(i >= n_background for i in ranking.batch) <= 1
    assert Mixed(positive_share=0.5)._positive_quota(PoolView(n_windows=3), 10) == 5


def test_mixed_without_embeddings_or_model_still_ranks():
    proba = np.linspace(0, 1, 21)
    ranking = Mixed().rank(PoolView(proba=proba), batch_size=4, rng=0)
    assert 20 in ranking.batch  # the most likely positive is reserved
    assert 10 in ranking.batch  # and the most uncertain follows
    detector_only = Mixed().rank(PoolView(detector_score=proba), batch_size=4, rng=0)
    assert detector_only.order[0] == 20


def test_mixed_trusts_the_detector_until_the_model_has_seen_this_patients_spikes():
    """A model that has seen few of the patient's spikes (or a cohort model, none) ranks likely positives poorly:
    the classical detector picks them until the labels hold ``trust_after_positives`` spikes (default 10)."""
    proba, detector = np.linspace(0, 1, 21), np.linspace(1, 0, 21)

    def pool(n_spikes, n_labels=12):
        return PoolView(proba=proba, detector_score=detector, labeled_embeddings=np.zeros((n_labels, 1)),
                        labeled_y=np.r_[np.ones(n_spikes), np.zeros(n_labels - n_spikes)])

    assert Mixed(positive_share=0.25).rank(pool(0), batch_size=4, rng=0).order[0] == 0
    assert Mixed(positive_share=0.75).rank(pool(9), batch_size=8, rng=0).order[0] == 0
    assert Mixed(positive_share=0.75).rank(pool(10), batch_size=8, rng=0).order[0] == 20
    assert Mixed(positive_share=0.75, trust_after_positives=3).rank(pool(3), batch_size=8, rng=0).order[0] == 20


def test_mixed_searches_for_spikes_around_the_labeled_ones_and_away_from_labeled_artifacts():
    """Before the model is trusted, the detector's high scores are corrected by the labels around them: artifacts
    the detector scores higher than spikes stop filling the positive share once one of them is labeled."""
    rng = np.random.default_rng(0)
    emb, blob = blobs(sizes=(300, 15, 10), spread=0.5)  # background, artifacts, spikes
    detector = np.select([blob == 1, blob == 2], [0.9, 0.6], 0.1) + rng.uniform(0, 0.05, len(emb))
    labeled = PoolView(detector_features=emb, detector_score=detector, proba=np.full(len(emb), 0.1),
                       labeled_detector_features=CENTRES[[1, 2]], labeled_y=np.array([0.0, 1.0]))  # artifact, spike
    batch = Mixed(positive_share=0.5).rank(labeled, batch_size=8, rng=0).batch
    assert np.sum(blob[batch] == 2) >= 4
    searchless = Mixed(positive_share=0.5, search_neighbors=None).rank(labeled, batch_size=8, rng=0).batch
    assert np.sum(blob[searchless] == 2) == 0


def test_the_detector_counts_for_less_once_its_likeliest_windows_were_labeled_artifacts():
    """Artifacts (blobs 1, 3, 4) outscore the spikes (blob 2) in the detector; the labels hold one spike and three
    artifacts of other kinds (far from every pool window, so their neighbourhoods say nothing of the pool). Once the
    labels say the detector promised many spikes and gave one, the labeled spike's neighbourhood comes first."""
    rng = np.random.default_rng(0)
    emb, blob = blobs(sizes=(300, 15, 10, 15, 15), spread=0.5)
    detector = np.select([blob == 2, blob > 0], [0.3, 0.95], 0.05) + rng.uniform(0, 0.02, len(emb))
    labeled_x = np.r_[CENTRES[[2]], [[40.0, 0.0], [0.0, 40.0], [40.0, 40.0]]]  # one spike, three other artifacts
    view = dict(detector_features=emb, detector_score=detector, proba=np.full(len(emb), 0.1),
                labeled_detector_features=labeled_x, labeled_y=np.array([1.0, 0.0, 0.0, 0.0]))  # fmt: skip
    uncalibrated = Mixed(positive_share=0.5).rank(PoolView(**view), batch_size=8, rng=0).batch
    calibrated = PoolView(**view, labeled_detector_score=np.array([0.3, 0.95, 0.95, 0.95]))
    batch = Mixed(positive_share=0.5).rank(calibrated, batch_size=8, rng=0).batch
    assert np.sum(blob[batch] == 2) > np.sum(blob[uncalibrated] == 2)
    assert np.sum(blob[batch] == 2) >= 3
    np.testing.assert_allclose(calibrated_prior(np.array([0.9, 0.1]), np.full(4, 0.95), np.r_[1.0, 0, 0, 0]),
                               [0.9 * 2 / 4.8, 0.1 * 2 / 4.8])  # fmt: skip
    assert np.array_equal(calibrated_prior(np.array([0.9]), np.array([0.1]), np.array([1.0])), [0.9])  # not above


def test_neighbour_vote_keeps_the_prior_far_from_labels_and_follows_them_near():
    x = np.array([[0.0], [0.1], [5.0], [5.1], [100.0]])
    prior = np.full(5, 0.5)
    vote = neighbour_vote(x, np.array([[0.0], [5.0]]), np.array([1.0, 0.0]), prior, n_neighbors=2)
    assert vote[0] > 0.7 and vote[1] > 0.6
    assert vote[2] < 0.3 and vote[3] < 0.4
    assert vote[4] == pytest.approx(0.5)
    assert np.array_equal(neighbour_vote(x, np.zeros((0, 1)), np.zeros(0), prior), prior)


def test_mixed_draws_diversity_from_the_most_uncertain_windows():
    """Cluster-Margin style: with a model, the batch spreads over groups among the most useful windows only."""
    rng = np.random.default_rng(0)
    emb = np.vstack([rng.normal(0, 1, (50, 2)), rng.normal(20, 1, (150, 2))])
    proba = np.r_[np.full(50, 0.5), np.full(150, 0.01)] + rng.uniform(0, 0.01, 200)
    pool = PoolView(embeddings=emb, proba=proba)
    focused = Mixed(n_clusters=2, positive_share=0, candidate_factor=2).rank(pool, batch_size=4, rng=0)
    assert all(i < 50 for i in focused.batch)  # the uncertain blob only
    spread = Mixed(n_clusters=2, positive_share=0, candidate_factor=None).rank(pool, batch_size=4, rng=0)
    assert any(i >= 50 for i in spread.batch)  # round-robin over both groups


def test_mixed_bald_uncertainty_uses_the_draws():
    mc = np.vstack([np.full((20, 6), 0.5), np.tile([0.05, 0.95], (20, 3))])
    ranking = Mixed(uncertainty="bald", positive_share=0).rank(PoolView(mc_proba=mc), batch_size=5, rng=0)
    assert np.all(ranking.batch >= 20)
    with pytest.raises(ValueError, match="uncertainty must be one of"):
        Mixed(uncertainty="nope").rank(PoolView(mc_proba=mc), 2)


# ------------------------------------------------------------------ cold start and transfer


def test_cold_start_batch_holds_detector_hits_and_covers_the_clusters():
    emb, blob = blobs(sizes=(300, 200, 100, 50, 6), spread=1.0)
    rng = np.random.default_rng(0)
    detector = rng.uniform(0, 0.3, len(emb))
    detector[blob == 4] = rng.uniform(0.8, 1.0, 6)  # the rare transients sit in blob 4
    pool = PoolView(embeddings=emb, detector_score=detector, proba=np.full(len(emb), 0.5))  # proba ignored
    ranking = ColdStart(n_clusters=4).rank(pool, batch_size=10, rng=0)
    assert np.sum(blob[ranking.batch] == 4) >= 5
    assert {0, 1, 2, 3} <= set(blob[ranking.batch])


def test_embedding_drift_is_about_a_half_inside_the_cohort_and_near_one_outside():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((2000, 4))
    same = rng.standard_normal((500, 4))
    far = rng.standard_normal((50, 4)) + 6.0
    drift = embedding_drift(np.vstack([same, far]), reference, rng=0)
    assert 0.35 < np.median(drift[:500]) < 0.65
    assert np.all(drift[500:] > 0.95)


def test_transfer_aware_favours_drifted_windows():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((1000, 4))
    pool_emb = np.vstack([rng.standard_normal((400, 4)), rng.standard_normal((20, 4)) + [6, 0, 0, 0]])
    pool = PoolView(embeddings=pool_emb, reference_embeddings=reference)
    ranking = TransferAware().rank(pool, batch_size=10, rng=0)
    assert np.all(ranking.batch >= 400)
    strategy = TransferAware()
    proba = np.r_[rng.uniform(0, 1, 400), np.full(20, 0.02)]  # the cohort model is sure about the drifted windows
    with_model = strategy.rank(PoolView(embeddings=pool_emb, reference_embeddings=reference, proba=proba), 10, rng=0)
    assert np.mean(with_model.batch >= 400) >= 0.5, "drift still counts when the model is (over)confident"
    assert np.median(strategy.drift_from_cohort(pool, rng=0)[:400]) < 0.7
    np.testing.assert_allclose(strategy.trusted_uncertainty(np.array([0.2, 0.2, 1.0]), np.array([0.5, 1.0, 0.5])),
                               [0.2, 1.0, 1.0])
    without_drift = TransferAware(drift_weight=0).rank(PoolView(embeddings=pool_emb, reference_embeddings=reference,
                                                                proba=proba), 10, rng=0)
    assert np.all(without_drift.batch < 400)  # drift_weight=0: plain entropy


# ------------------------------------------------------------------ hand-off to Label Studio


def label_studio_serving(score, cluster, n_steps):
    """Label Studio's "Uncertainty sampling" /next rule (projects/functions/next_task.py): the unlabeled task in the
    cluster with the fewest solved tasks, lowest score first."""
    solved, served = {}, []
    remaining = set(range(len(score)))
    for _ in range(n_steps):
        nxt = min(remaining, key=lambda i: (solved.get(cluster[i], 0), score[i]))
        served.append(nxt)
        remaining.remove(nxt)
        solved[cluster[nxt]] = solved.get(cluster[nxt], 0) + 1
    return served


@pytest.mark.parametrize("strategy", [Mixed(), KMeansDiversity(), ColdStart(), KCenter(), Entropy()])
def test_label_studio_serves_the_batch_first_in_order(strategy):
    pool, _ = mixed_pool()
    pool = PoolView(embeddings=pool.embeddings, proba=pool.proba, detector_score=pool.proba)
    ranking = strategy.rank(pool, batch_size=12, rng=0)
    served = label_studio_serving(ranking.score, ranking.cluster, 12)
    if isinstance(strategy, KCenter):  # groups = the batch windows themselves: the same set, not the same order
        assert sorted(served) == sorted(ranking.batch)
    else:
        assert served == list(ranking.batch)


def test_round_robin_takes_one_per_cluster_in_turn():
    from ls_backend.active.diversity import round_robin

    cluster = np.array([0, 0, 0, 1, 1, 2])
    utility = np.array([0.1, 0.9, 0.5, 0.3, 0.8, 0.2])
    priority = np.array([1, 0, 2])  # cluster 1 first, then 0, then 2
    assert list(round_robin(cluster, utility, priority)) == [4, 1, 5, 3, 2, 0]


def test_ranked_batch_moves_from_diversity_to_uncertainty_as_labels_grow():
    emb, blob = blobs()
    proba = np.where(blob == 0, 0.5, 0.02)  # the model is unsure only about blob 0
    cold = RankedBatch().rank(PoolView(embeddings=emb, proba=proba), batch_size=5, rng=0)
    assert len(set(blob[cold.batch])) >= 4, "no labels: spread over the blobs"
    many_labels = np.repeat(CENTRES, 400, axis=0)
    warm = RankedBatch().rank(PoolView(embeddings=emb, proba=proba, labeled_embeddings=many_labels), 5, rng=0)
    assert np.all(blob[warm.batch] == 0), "many labels: uncertainty leads"


def test_transfer_aware_with_a_domain_classifier():
    rng = np.random.default_rng(1)
    reference = rng.standard_normal((1000, 4))
    pool_emb = np.vstack([rng.standard_normal((400, 4)), rng.standard_normal((20, 4)) + [6, 0, 0, 0]])
    pool = PoolView(embeddings=pool_emb, reference_embeddings=reference)
    drift = domain_drift(pool_emb, reference, rng=0)
    assert 0.3 < np.median(drift[:400]) < 0.7
    assert drift[400:].min() > np.quantile(drift[:400], 0.99)  # linear: ordered right, not saturated
    ranking = TransferAware(drift="classifier").rank(pool, batch_size=10, rng=0)
    assert np.all(ranking.batch >= 400)
    with pytest.raises(ValueError, match="drift must be one of"):
        TransferAware(drift="nope").rank(pool, 2)
