"""Self-supervised pretraining of the encoder (ls_backend.model.pretrain) and fits that start from it."""

import numpy as np
import pytest
import torch

from converters.windows import StoreWriter, WindowParams, WindowStore, window_ids, window_starts
from ls_backend.loop import Labeled, Plan, learn
from ls_backend.model import SpikeDetector
from ls_backend.model.pretrain import (
    PretrainParams,
    load_encoder,
    pretrain_encoder,
    pretrain_from_stores,
    sample_channel_windows,
    save_encoder,
)
from tests.model_helpers import TINY, toy_windows

SFREQ = 64.0
FEW_STEPS = PretrainParams(steps=30, batch_size=16, n_windows=300)


def write_store(path, n_windows=30, n_chans=3, seed=0):
    """A small window store of noise (channel 2 flat: never sampled) with a transient in every third window."""
    rng = np.random.default_rng(seed)
    window, stride = WindowParams(1.0).samples(SFREQ)
    signal = rng.standard_normal((n_chans, n_windows * window)).astype(np.float32) * 30
    signal[2] = 0.0
    for k in range(0, n_windows, 3):
        signal[k % 2, k * window + 20 : k * window + 26] += 300 * np.hanning(6)
    writer = StoreWriter(path, n_chans, signal.shape[1])
    writer.append(signal)
    starts = window_starts(signal.shape[1], window, stride)
    writer.write_index(window_ids(f"{seed:02d}" * 32, starts, SFREQ, window), starts)
    writer.write_annotations([])
    writer.set_attrs(sfreq=SFREQ, ch_names=[f"A{i + 1}" for i in range(n_chans)],
                     channel_scale_uv=np.full(n_chans, 30.0, np.float32), window_samples=window,
                     stride_samples=stride, provenance={})
    return writer.commit()


def trunk(module):
    return {k: v for k, v in module.state_dict().items() if not k.startswith("head.")}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_channel_windows_are_sampled_across_stores_from_usable_channels(tmp_path):
    stores = [WindowStore(write_store(tmp_path / f"r{s}.h5", n_windows=10 + 20 * s, seed=s)) for s in (0, 1)]
    windows = sample_channel_windows(stores, 500, seed=0)
    assert windows.shape == (500, 64) and windows.dtype == np.float32
    assert (windows.std(axis=1) > 0.1).all()  # the flat channel is never drawn
    assert sample_channel_windows(stores, 500, seed=0).tobytes() == windows.tobytes()  # seeded
    with_nan = np.ones((4, 2, 64), np.float32)
    with_nan[:, 0] = np.nan
    with_nan[:, 1] = np.random.default_rng(0).standard_normal((4, 64))
    assert np.isfinite(sample_channel_windows([with_nan], 8)).all()  # arrays too; absent channels skipped
    with pytest.raises(ValueError, match="at least one window store"):
        sample_channel_windows([], 10)


@pytest.mark.parametrize("objective", ["contrastive", "masked"])
def test_pretraining_lowers_its_loss(tmp_path, objective):
    store = WindowStore(write_store(tmp_path / "rec.h5"))
    params = PretrainParams(objective=objective, steps=60, batch_size=16, n_windows=300)
    encoder = pretrain_from_stores([store], TINY, params, seed=0)
    assert len(encoder.losses) == 60 and encoder.n_windows == 300
    assert np.mean(encoder.losses[-10:]) < np.mean(encoder.losses[:10])
    assert set(encoder.state) and all(k.startswith(("stem.", "blocks.")) for k in encoder.state)


def test_fit_starts_the_trunk_from_the_encoder_and_the_head_fresh():
    X, y = toy_windows(n_times=64)
    encoder = pretrain_encoder(sample_channel_windows([X], 200), TINY, FEW_STEPS, seed=1)
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
    encoder = pretrain_encoder(sample_channel_windows([X], 200), TINY, FEW_STEPS, seed=1)
    plan = Plan(cold_epochs=0, warm_epochs=0, pseudo=None, model=TINY, encoder=encoder.state)
    first = learn(Labeled(X, y), None, plan).candidate
    assert same(encoder.state, trunk(first.module_))
    second = learn(Labeled(X, y), first, plan).candidate  # later models start from the serving one
    assert same(first.module_.state_dict(), second.module_.state_dict())


def test_an_encoder_file_round_trips_and_a_foreign_one_is_refused(tmp_path):
    X, _ = toy_windows(n_times=64)
    encoder = pretrain_encoder(sample_channel_windows([X], 100), TINY, PretrainParams(steps=2, batch_size=8), seed=0)
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
    ],
)
def test_bad_pretraining_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        pretrain_encoder(np.zeros((4, 64), np.float32), TINY, params)
