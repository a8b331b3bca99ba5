"""Self-supervised pretraining of the encoder (ls_backend.model.pretrain) and fits that start from it."""

import json

import numpy as np
import pytest
import torch

from benchmarks import replay as bench
from converters.windows import WindowStore
from converters.windowset import WindowSet, save_windowset
from ls_backend.config import Settings
from ls_backend.loop import Labeled, Plan, cold_embedder, in_batches, learn, rank
from ls_backend.model import SpikeDetector
from ls_backend.model.pretrain import (
    PretrainParams,
    TrunkEmbedder,
    load_encoder,
    pretrain_encoder,
    pretrain_from_stores,
    sample_channel_windows,
    save_encoder,
)
from ls_backend.pretraining import pretrain_project
from ls_backend.project_state import file_lock
from ls_backend.registry import ModelRegistry
from ls_backend.retrain import PLAN
from tests.model_helpers import TINY, toy_windows
from tests.test_active_ranking import write_store

FEW_STEPS = PretrainParams(steps=30, batch_size=16, n_windows=300)


def trunk(module):
    return {k: v for k, v in module.state_dict().items() if not k.startswith("head.")}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_channel_windows_are_sampled_across_stores_from_usable_channels(tmp_path):
    stores = [WindowStore(write_store(tmp_path / f"r{n}.h5", n_windows=n, spikes=(3,))) for n in (10, 30)]
    windows = sample_channel_windows(stores, 500, seed=0)
    assert windows.shape == (500, 512) and windows.dtype == np.float32 and np.isfinite(windows).all()
    assert sample_channel_windows(stores, 500, seed=0).tobytes() == windows.tobytes()  # seeded
    X = np.ones((4, 3, 64), np.float32)  # arrays too: channel 0 absent, channel 1 flat, channel 2 the only usable
    X[:, 0] = np.nan
    X[:, 2] = np.random.default_rng(0).standard_normal((4, 64))
    assert np.array_equal(np.unique(sample_channel_windows([X], 40), axis=0), np.unique(X[:, 2], axis=0))
    with pytest.raises(ValueError, match="at least one window store"):
        sample_channel_windows([], 10)
    with pytest.raises(ValueError, match=r"one length; the window stores have \[32, 64\]"):
        sample_channel_windows([X, np.random.default_rng(1).standard_normal((4, 2, 32)).astype(np.float32)], 40)


def test_a_transient_share_of_the_channel_windows_comes_from_the_most_transient_channel():
    X, y = toy_windows(30, n_chans=6, seed=3)  # every third window: a sharp transient on one channel
    spiked = [X[i, np.abs(X[i]).max(axis=1).argmax()] for i in np.flatnonzero(y)]
    drawn = sample_channel_windows([X[y == 1]], 40, seed=0, transient_share=1.0)
    assert all(any(np.array_equal(w, s) for s in spiked) for w in drawn)
    random = sample_channel_windows([X[y == 1]], 40, seed=0)
    assert sum(any(np.array_equal(w, s) for s in spiked) for w in random) < 20


def test_neighbouring_channel_pairs_come_from_one_window_and_skip_absent_contacts():
    X = np.random.default_rng(0).standard_normal((6, 5, 64)).astype(np.float32)
    X[:, 1] = np.nan  # channel 1 absent: channel 0 has no usable neighbour
    X[5, 3:] = np.nan  # window 5: channels 0 and 2 usable, neither with a usable neighbour
    pairs = sample_channel_windows([X], 60, seed=0, pairs=True)
    assert pairs.shape[1:] == (2, 64) and 40 <= len(pairs) < 60  # window 5's draws are left out
    chans = {(w, c): X[w, c].tobytes() for w in range(6) for c in range(5)}
    where = {v: k for k, v in chans.items()}
    for a, b in pairs:
        (wa, ca), (wb, cb) = where[a.tobytes()], where[b.tobytes()]
        assert wa == wb != 5 and abs(ca - cb) == 1 and 1 not in (ca, cb)
    with pytest.raises(ValueError, match="no pair of neighbouring usable channels"):
        sample_channel_windows([X[5:]], 10, pairs=True)
    with pytest.raises(ValueError, match=r"\[n >= 2, 2, n_times\] \(pairs"):
        pretrain_encoder(np.zeros((4, 64), np.float32), TINY, PretrainParams(objective="neighbours"))


@pytest.mark.parametrize("objective", ["contrastive", "masked"])
def test_pretraining_lowers_its_loss(tmp_path, objective):
    store = WindowStore(write_store(tmp_path / "rec.h5"))
    params = PretrainParams(objective=objective, steps=60, batch_size=16, n_windows=300)
    encoder = pretrain_from_stores([store], TINY, params, seed=0)
    assert len(encoder.losses) == 60 and encoder.n_windows == 300  # channel-windows, or pairs of them
    assert np.mean(encoder.losses[-10:]) < np.mean(encoder.losses[:10])
    assert set(encoder.state) and all(k.startswith(("stem.", "blocks.")) for k in encoder.state)


def test_neighbour_pretraining_learns_what_neighbouring_contacts_share():
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((300, 1, 64)).cumsum(axis=2)  # each window's own field, on all its contacts
    X = (shared * rng.uniform(0.5, 1.0, (300, 4, 1)) + 0.2 * rng.standard_normal((300, 4, 64))).astype(np.float32)
    params = PretrainParams(objective="neighbours", steps=60, batch_size=16, n_windows=300)
    encoder = pretrain_encoder(sample_channel_windows([X], 300, pairs=True), TINY, params, seed=0)
    assert np.mean(encoder.losses[-10:]) < np.mean(encoder.losses[:10])


def test_fit_starts_the_trunk_from_the_encoder_and_the_head_fresh():
    X, y = toy_windows(n_times=64)
    encoder = pretrain_encoder(sample_channel_windows([X], 200, pairs=FEW_STEPS.pairs), TINY, FEW_STEPS, seed=1)
    fresh = SpikeDetector(**{**TINY, "epochs": 0}).fit(X, y)
    started = SpikeDetector(**{**TINY, "epochs": 0}).fit(X, y, init_from=encoder.state)
    assert same(encoder.state, trunk(started.module_)) and not same(trunk(fresh.module_), encoder.state)
    assert torch.equal(started.module_.head.weight, fresh.module_.head.weight)  # the seed's fresh head
    trained = SpikeDetector(**TINY).fit(X, y, init_from=encoder.state)
    assert trained.warm_started_ and np.isfinite(trained.predict_proba(X)).all()
    with pytest.raises(ValueError, match="does not match this architecture"):
        SpikeDetector(**{**TINY, "width": 4}).fit(X, y, init_from=encoder.state)
    assert encoder.fits(TINY) and not encoder.fits({**TINY, "width": 4})


def test_the_first_model_of_a_plan_with_an_encoder_starts_from_it():
    X, y = toy_windows(n_times=64)
    encoder = pretrain_encoder(sample_channel_windows([X], 200, pairs=FEW_STEPS.pairs), TINY, FEW_STEPS, seed=1)
    plan = Plan(cold_epochs=0, warm_epochs=0, pseudo=None, model=TINY, encoder=encoder.state)
    first = learn(Labeled(X, y), None, plan).candidate
    assert same(encoder.state, trunk(first.module_))
    second = learn(Labeled(X, y), first, plan).candidate  # later models start from the serving one
    assert same(first.module_.state_dict(), second.module_.state_dict())


def test_the_trunk_embeds_windows_by_their_most_telling_channel():
    X, _ = toy_windows(n_times=64)
    encoder = pretrain_encoder(sample_channel_windows([X], 200, pairs=FEW_STEPS.pairs), TINY, FEW_STEPS, seed=1)
    embed = TrunkEmbedder(encoder.state, TINY)
    X = X[:6].copy()
    X[1, 1:] = np.nan  # one channel left
    X[2] = np.nan  # none
    out = embed(X)
    assert out.shape == (6, 2 * TINY["width"]) and np.isfinite(out).all() and not out[2].any()
    assert np.allclose(out[1], embed(X[1:2, :1])[0], atol=1e-5)  # absent channels do not count
    assert np.allclose(embed(X[[0, 3]]), out[[0, 3]], atol=1e-5)  # a window's embedding is its own


def test_the_cold_start_ranking_uses_the_encoders_embeddings_when_asked():
    X, _ = toy_windows(n_times=64)
    encoder = pretrain_encoder(sample_channel_windows([X], 200, pairs=FEW_STEPS.pairs), TINY, FEW_STEPS, seed=1)
    assert cold_embedder(Plan(model=TINY, encoder=encoder.state)) is None  # off by default
    assert cold_embedder(Plan(model=TINY, cold_embeddings=True)) is None  # nothing pretrained
    embedder = cold_embedder(Plan(model=TINY, encoder=encoder.state, cold_embeddings=True))
    assert isinstance(embedder, TrunkEmbedder)
    calls = []

    def recorded(windows):
        calls.append(len(windows))
        return embedder(windows)

    ranking = rank(None, in_batches(X, 16), None, "mixed", 5, 0, 256.0, embedder=recorded)
    assert sorted(ranking.order) == list(range(len(X))) and sum(calls) == len(X)


def test_an_encoder_file_round_trips_and_a_foreign_one_is_refused(tmp_path):
    X, _ = toy_windows(n_times=64)
    params = PretrainParams(steps=2, batch_size=8)
    encoder = pretrain_encoder(sample_channel_windows([X], 100, pairs=params.pairs), TINY, params, seed=0)
    loaded = load_encoder(save_encoder(tmp_path / "encoder.pt", encoder))
    assert same(encoder.state, loaded.state) and loaded.architecture == encoder.architecture
    assert loaded.losses == pytest.approx(encoder.losses)
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    for bad in ("other.pt", "missing.pt"):
        with pytest.raises(ValueError, match=bad):
            load_encoder(tmp_path / bad)


@pytest.mark.parametrize(
    "params, message",
    [
        (PretrainParams(steps=0), "steps >= 1"),
        (PretrainParams(max_shift=0.6), "max_shift"),
        (PretrainParams(objective="jigsaw"), "objective"),
        (PretrainParams(transient_share=1.5), "transient_share"),
    ],
)
def test_bad_pretraining_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        pretrain_encoder(np.zeros((4, 64), np.float32), TINY, params)


def test_the_pretraining_job_keeps_the_encoder_where_retraining_finds_it(tmp_path):
    settings = Settings(model_dir=tmp_path / "models", window_store_dir=tmp_path / "stores")
    write_store(tmp_path / "stores" / "P1" / "rec.h5", n_windows=10, spikes=(3,))
    params = PretrainParams(steps=4, batch_size=8, n_windows=50)
    encoder = pretrain_project(settings, 7, stores=["P1/rec.h5"], params=params)
    registry = ModelRegistry(settings.model_dir)
    plan = registry.with_encoder(7, PLAN)
    assert plan.encoder is not None and same(encoder.state, plan.encoder)
    assert registry.with_encoder(7, Plan(model={"width": 8})) == Plan(model={"width": 8})  # another architecture
    assert registry.with_encoder(8, PLAN) is PLAN  # a project without one
    registry.encoder_path(9).parent.mkdir(parents=True)
    registry.encoder_path(9).write_bytes(b"not an encoder")
    assert registry.with_encoder(9, PLAN) is PLAN
    with pytest.raises(ValueError, match="no task with a window store"):
        pretrain_project(settings, 7, stores=[], params=params)


def test_quick_replay_with_pretraining_reuses_stored_references(tmp_path):
    parts = [toy_windows(60, n_chans=3, seed=s) for s in (1, 2)]
    X, y = (np.concatenate([p[k] for p in parts]) for k in (0, 1))
    path = save_windowset(WindowSet(X, y, 256.0, np.repeat(["P1", "P2"], 60)), tmp_path / "toy.npz")
    first, second = tmp_path / "cold.json", tmp_path / "pretrained.json"
    common = ["--quick", "--windowset", str(path), "--target-patient", "P2", "--strategies", "random", "--seeds", "1"]
    assert bench.main([*common, "--jobs", "1", "--out", str(first)]) == 0
    argv = [*common, "--jobs", "1", "--pretrain", "--warm-start", "--references-from", str(first), "--out", str(second),
            "--cold-embeddings"]  # fmt: skip
    assert bench.main(argv) == 0
    result = json.loads(second.read_text())
    pretrained = {"random+pretrain", "random+warm+pretrain", "random+pretrain+embed"}
    assert set(result["curves"]) == {"random", "random+warm", *pretrained}
    assert result["full_supervised"] == json.loads(first.read_text())["full_supervised"]  # not trained again
    assert set(result["targets"]["pretrain_vs_not"]["per_variant"]) == pretrained
    assert set(result["pretraining"]["per_seed"]) == {"0"}
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(first.read_text()), "data": {"target": "P1"}}))
    with pytest.raises(SystemExit, match="not this run's"):
        bench.main([*common, "--pretrain", "--references-from", str(other), "--out", str(second)])


@pytest.mark.pretrain_after_import
def test_the_pretraining_after_a_cold_start_runs_once_in_the_background(tmp_path, monkeypatch):
    from ls_backend import pretraining

    monkeypatch.setattr(pretraining, "AFTER_IMPORT", PretrainParams(steps=4, batch_size=8, n_windows=50))
    write_store(tmp_path / "stores" / "P1" / "rec.h5", n_windows=10, spikes=(3,))
    on = Settings(model_dir=tmp_path / "models", window_store_dir=tmp_path / "stores")
    assert on.pretrain_after_import  # the default
    off = Settings.from_env({"MODEL_DIR": str(on.model_dir), "WINDOW_STORE_DIR": str(on.window_store_dir),
                             "PRETRAIN_AFTER_IMPORT": "no"})  # fmt: skip
    assert pretraining.start_after_cold_start(off, "7", ["P1/rec.h5"]) is None
    thread = pretraining.start_after_cold_start(on, "7", ["P1/rec.h5"])
    assert thread is not None
    thread.join(120)
    registry = ModelRegistry(on.model_dir)
    assert registry.with_encoder(7, PLAN).encoder is not None
    assert pretraining.start_after_cold_start(on, "7", ["P1/rec.h5"]) is None  # it has one
    assert not pretraining.pretrain_if_missing(on, "8", ["P1/missing.h5"])  # a failure is logged, not raised
    with file_lock(registry.state(9).lock("pretrain")):  # another process is pretraining project 9
        assert not pretraining.pretrain_if_missing(on, "9", ["P1/rec.h5"])
    assert not registry.encoder_path(8).exists()
    with pytest.raises(ValueError, match="PRETRAIN_AFTER_IMPORT='maybe': expected 1/0, true/false or yes/no"):
        Settings.from_env({"PRETRAIN_AFTER_IMPORT": "maybe"})


def test_a_model_trained_before_the_encoder_arrived_is_challenged_by_one_started_from_it():
    from ls_backend.retrain import ENCODER_CHALLENGE_LABELS, encoder_arrived

    X, y = toy_windows(30, seed=11)
    plan = Plan(cold_epochs=2, warm_epochs=1, pseudo=None, model=TINY)
    serving = learn(Labeled(X, y), None, plan).model
    assert learn(Labeled(X, y), serving, plan).candidate.warm_started_  # warm from the serving model
    restarted = learn(Labeled(X, y), serving, plan, restart=True).candidate
    assert not restarted.warm_started_ and restarted.epochs == plan.cold_epochs  # as a first model would
    encoder = {"stem.0.weight": torch.zeros(1)}  # only its presence matters here
    with_encoder = Plan(model=TINY, encoder=encoder)
    assert encoder_arrived(with_encoder, (serving, {"labels_used": 30}), 30)  # trained before the encoder was there
    assert not encoder_arrived(with_encoder, (serving, {}), ENCODER_CHALLENGE_LABELS + 1)  # too late to pay
    assert not encoder_arrived(with_encoder, (serving, {"from_encoder": True}))
    assert not encoder_arrived(with_encoder, None)  # the first model starts from it anyway
    assert not encoder_arrived(plan, (serving, {}))  # no encoder
