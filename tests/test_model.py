"""The spike model: network shapes and FLOPs, estimator contract, channel-agnostic inference, learning, metrics."""

from __future__ import annotations

import copy
import platform

import numpy as np
import pytest
import torch
from model_helpers import TINY, toy_windows
from sklearn.metrics import roc_auc_score

from converters.windowset import synthetic_windowset
from ls_backend.model import ResNet1d, SpikeDetector, flops_per_window, streams
from ls_backend.model.estimator import NotFittedError, inference_batch_size
from ls_backend.model.losses import balanced_indices, soft_focal_loss
from ls_backend.model.metrics import auprc, best_threshold, evaluate, event_metrics, f1_at
from ls_backend.model.regions import extract_regions
from ls_backend.model.resnet1d import (
    PackedResNet1d,
    conv_nhwc,
    count_parameters,
    fuse_batchnorm,
    fused_kernels_available,
    inference_network,
    receptive_field,
    smooth_max,
    to_nhwc,
)
from ls_backend.model.streams import map_in_streams

_toy = toy_windows


# ---------------------------------------------------------------------------------------------- network


def test_resnet_shapes_and_flops():
    net = ResNet1d(1, width=8, depth=3, kernel_size=7, dilation=(1, 2, 4)).eval()
    x = torch.randn(4, 1, 100)
    features, embedding = net.forward_features(x)
    assert features.shape == (4, 8, 100) and embedding.shape == (4, 8)
    assert net.forward_head(features).shape == (4, 1, 100) and net(x).shape == (4, 1, 100)
    # the reference model: 8 blocks, 64 channels, kernel 7, 256 samples -> 236 MFLOP
    assert flops_per_window(256, 64, 8, 7) / 1e6 == pytest.approx(235.1, abs=0.5)
    big = ResNet1d(1, 64, 8, 7)
    weights = sum(p.numel() for n, p in big.named_parameters() if "conv" in n or n.startswith("stem.0"))
    head = 64 * 256 * 2 + 256 * 2  # head conv FLOPs (weights + bias)
    assert flops_per_window(256, 64, 8, 7) == 2 * weights * 256 + head - 256 * 2 + 0 * count_parameters(big)
    with pytest.raises(ValueError, match="odd"):
        ResNet1d(kernel_size=4)
    assert [b.conv1.dilation[0] for b in ResNet1d(depth=6, dilation=(1, 2, 4, 8)).blocks] == [1, 2, 4, 8, 1, 2]
    assert receptive_field(4, 7, (1, 2, 4, 8)) == 7 + 2 * 6 * 15 and receptive_field(2, 5) == 5 + 2 * 2 * 4
    with pytest.raises(ValueError, match="positive"):
        ResNet1d(depth=2, dilation=(1, 0))


def test_fused_batchnorm_same_function():
    net = ResNet1d(1, width=8, depth=2, kernel_size=5, dropout=0.2)
    net.train()
    for _ in range(3):  # non-trivial running statistics
        net(torch.randn(16, 1, 64) * 3 + 1)
    net.eval()
    x = torch.randn(5, 1, 64)
    fused = fuse_batchnorm(net)
    torch.testing.assert_close(fused(x), net(x), rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.Dropout) for m in fused.modules())  # MC dropout still possible


needs_fused_kernels = pytest.mark.skipif(not fused_kernels_available(), reason="PyTorch built without oneDNN")


def _trained_network(n_outputs: int = 1, **kwargs) -> ResNet1d:
    net = ResNet1d(n_outputs, **kwargs)
    net.train()
    for _ in range(3):  # non-trivial running statistics
        net(torch.randn(16, 1, 64) * 3 + 1)
    return net.eval()


@needs_fused_kernels
@pytest.mark.parametrize("shape", [(1, 1, 10), (37, 1, 64), (130, 1, 257)])
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_packed_network_same_function(shape, n_outputs):
    """Fused ReLU/residual-add convolutions with prepacked weights (zero-padded inputs for dilated ones) compute
    the network's function, for any batch and length; the embedding too."""
    torch.manual_seed(0)
    net = _trained_network(n_outputs, width=16, depth=4, kernel_size=7, dilation=(1, 2, 4, 8), dropout=0.2)
    packed = inference_network(net)
    assert isinstance(packed, PackedResNet1d) and packed.width == 16 and packed.embedding_dim == 16
    x = torch.randn(*shape)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), net(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(packed.forward_features(x)[1], net.forward_features(x)[1], rtol=1e-4, atol=1e-5)
        # the padded-input buffers are reused: a second call with another shape, then the first again
        packed(torch.randn(3, 1, 40))
        torch.testing.assert_close(packed(x), net(x), rtol=1e-4, atol=1e-5)


@needs_fused_kernels
def test_packed_network_falls_back_and_keeps_mc_dropout():
    torch.manual_seed(0)
    net = _trained_network(width=8, depth=2, kernel_size=5, dropout=0.3)
    packed, folded = inference_network(net), fuse_batchnorm(net)
    x = torch.randn(9, 1, 64)
    # gradients and autocast go through the folded network itself
    torch.testing.assert_close(packed(x), net(x), rtol=1e-4, atol=1e-5)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert packed(x).dtype == torch.bfloat16
    # the dropout modules are the network's: MC dropout draws the same masks as the unpacked network
    for m in (packed, folded):
        for d in m.modules():
            if isinstance(d, torch.nn.Dropout):
                d.train()
    with torch.inference_mode():
        torch.manual_seed(1)
        a = packed(x)
        torch.manual_seed(1)
        b = folded(x)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(a, net(x))


def test_map_in_streams_keeps_order_and_thread_count():
    before = torch.get_num_threads()
    seen = []

    def square(i: int) -> int:
        seen.append(torch.get_num_threads())
        return i * i

    assert list(map_in_streams(square, range(50), streams=2)) == [i * i for i in range(50)]
    assert set(seen) == {1} and torch.get_num_threads() == before
    assert list(map_in_streams(square, iter([3]), streams=1)) == [9]

    def fail(i: int) -> int:
        if i == 7:
            raise ValueError("item 7")
        return i

    with pytest.raises(ValueError, match="item 7"):
        list(map_in_streams(fail, range(20), streams=2))
    assert torch.get_num_threads() == before


def test_retain_freed_memory_respects_the_environment(monkeypatch):
    monkeypatch.setattr(streams, "_retaining", False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert streams.retain_freed_memory() is False  # the user's glibc settings win
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert streams.retain_freed_memory() is expected
    assert streams.retain_freed_memory() is expected  # once per process, then a no-op


def test_smooth_max_between_mean_and_max():
    x = torch.tensor([[0.0, 0.0, 4.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    s = smooth_max(x, 5.0)
    assert torch.all(s <= x.max(dim=1).values + 1e-6) and torch.all(s >= x.mean(dim=1) - 1e-6)
    assert s[1] == pytest.approx(1.0)  # constant input: the constant, whatever the length
    assert smooth_max(x, 50.0)[0] == pytest.approx(4.0, abs=0.05)


# ---------------------------------------------------------------------------------------------- estimator contract


def test_init_stores_params_and_unfitted_errors():
    det = SpikeDetector(width=12, depth=1)
    assert det.get_params()["width"] == 12 and not det.is_fitted
    assert det.clone(depth=3).get_params() == det.get_params() | {"depth": 3}
    assert repr(det) == "SpikeDetector(depth=1, width=12)"  # the parameters that differ from the defaults
    with pytest.raises(NotFittedError, match="fit"):
        det.predict_proba(np.zeros((1, 2, 16), np.float32))
    with pytest.raises(ValueError, match="Invalid parameter .colour. for estimator SpikeDetector"):
        det.set_params(colour="red")


def test_fit_predict_shapes_and_channel_agnostic():
    X, y = _toy(n_chans=5)
    det = SpikeDetector(**TINY).fit(X, y)
    assert det.fit(X, y) is det and det.is_fitted and len(det.history_) == 2
    X9, _ = _toy(n=7, n_chans=9, seed=1)  # another layout: 9 channels, trained on 5
    proba = det.predict_proba(X9)
    assert proba.shape == (7,) and np.all((proba >= 0) & (proba <= 1))
    dense, chan = det.predict_dense(X9)
    assert dense.shape == (7, 64) and chan.shape == (7, 9)
    # the window probability is the max over channels, and the dense maximum follows the same channels
    np.testing.assert_allclose(proba, chan.max(axis=1), rtol=1e-5)
    assert det.embed(X9).shape == (7, 8)
    out = det.predict_all(X9)
    np.testing.assert_allclose(out["proba"], proba, rtol=1e-5)
    np.testing.assert_allclose(out["dense"], dense, rtol=1e-5)
    assert det.predict(X9).dtype == np.int64
    assert len(det.predict_regions(X9, onsets_seconds=np.arange(7) * 2.0)) == 7


def test_absent_channels_are_ignored():
    X, y = _toy(n=12, n_chans=4)
    det = SpikeDetector(**TINY).fit(X, y)
    padded = np.concatenate([X, np.full((12, 3, 64), np.nan, np.float32)], axis=1)
    np.testing.assert_allclose(det.predict_proba(padded), det.predict_proba(X), rtol=1e-5)
    dense, chan = det.predict_dense(padded)
    assert np.isnan(chan[:, 4:]).all() and np.isfinite(dense).all()
    padded[0] = np.nan  # a window with no channel at all: probability 0, training skips it
    assert det.predict_proba(padded)[0] == pytest.approx(0.0)
    SpikeDetector(**TINY).fit(padded, y)


def test_inference_batch_size():
    assert inference_batch_size(16, 256) == 256 and inference_batch_size(64, 256) == 64
    assert inference_batch_size(1, 64) == 256 and inference_batch_size(512, 4096) == 16


def test_batches_larger_than_inference_batch_agree():
    """Dense maxima reduced across inference batches (windows split between batches) equal one-by-one results."""
    X, y = _toy(n=60, n_chans=11)  # 660 channel-windows: several batches, windows split between them
    det = SpikeDetector(**TINY).fit(X[:12], y[:12])
    dense, chan = det.predict_dense(X)
    for i in (0, 23, 46, 59):
        d1, c1 = det.predict_dense(X[i : i + 1])
        np.testing.assert_allclose(dense[i], d1[0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(chan[i], c1[0], rtol=1e-4, atol=1e-6)


def test_parallel_streams_equal_one_stream():
    X, y = _toy(n=60, n_chans=11)  # several inference batches
    det = SpikeDetector(**TINY).fit(X[:12], y[:12])
    one = det.set_params(n_threads=1).predict_all(X)
    two = det.set_params(n_threads=2).predict_all(X)
    for key in ("proba", "dense", "channel", "embedding"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6)


def test_eval_set_keeps_best_epoch_and_refolds():
    X, y = _toy(n=30)
    det = SpikeDetector(**(TINY | {"epochs": 3})).fit(X[:20], y[:20], eval_set=(X[20:], y[20:]))
    assert [h["epoch"] for h in det.history_] == [1, 2, 3] and all("val_auprc" in h for h in det.history_)
    # predictions come from the final weights, not from a BatchNorm-folded copy made during training
    with torch.inference_mode():
        direct = det.module_(torch.from_numpy(X[:1, :1]))
    again = det.predict_proba(X[:1, :1])
    assert again[0] == pytest.approx(
        float(torch.sigmoid(smooth_max(direct[:, 0], det.sharpness) + det.logit_offset_)[0]), rel=1e-4
    )


def test_deterministic_with_seed():
    X, y = _toy()
    a = SpikeDetector(**TINY).fit(X, y).predict_proba(X)
    b = SpikeDetector(**TINY).fit(X, y).predict_proba(X)
    c = SpikeDetector(**(TINY | {"seed": 1})).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    state = torch.random.get_rng_state()
    SpikeDetector(**TINY).fit(X, y)
    assert torch.equal(state, torch.random.get_rng_state())  # fit leaves the global RNG alone


def test_mc_dropout_and_bf16():
    X, y = _toy()
    det = SpikeDetector(**(TINY | {"dropout": 0.3})).fit(X, y)
    mean, std = det.mc_dropout(X, n_samples=4)
    assert mean.shape == std.shape == (len(X),) and std.max() > 0
    np.testing.assert_array_equal(mean, det.mc_dropout(X, n_samples=4)[0])  # seeded
    # eval mode is restored: plain predictions stay deterministic
    np.testing.assert_array_equal(det.predict_proba(X), det.predict_proba(X))
    det.set_params(precision="bfloat16")
    assert np.abs(det.predict_proba(X) - det.set_params(precision="float32").predict_proba(X)).max() < 0.1


def test_freeze_blocks_keeps_early_weights():
    X, y = _toy()
    base = SpikeDetector(**TINY).fit(X, y)
    tuned = base.clone(freeze_blocks=1).fit(X, 1 - y, init_from=base)
    for name, p in base.module_.state_dict().items():
        frozen = name.startswith("stem.") or name.startswith("blocks.0.")
        same = torch.equal(p, tuned.module_.state_dict()[name])
        assert same == frozen or "num_batches" in name, name
    with pytest.raises(ValueError, match="architecture"):
        SpikeDetector(**(TINY | {"width": 4})).fit(X, y, init_from=base)


# ---------------------------------------------------------------------------------------------- learning


@pytest.fixture(scope="module")
def patient_a(tmp_path_factory):
    return synthetic_windowset(("A",), minutes=3, cache_dir=tmp_path_factory.mktemp("ws"))


def test_tiny_model_learns_synthetic_spikes(patient_a):
    """Trained on half of patient A's windows (1 s, 21 bipolar channels), it finds spikes in the other half."""
    ws = patient_a
    train, test = ws.subset(np.arange(len(ws)) % 2 == 0), ws.subset(np.arange(len(ws)) % 2 == 1)
    assert test.y.sum() >= 3
    det = SpikeDetector(width=8, depth=2, kernel_size=5, epochs=6, samples_per_epoch=256, seed=0)
    det.fit(train.X, train.y, dense_targets=train.y_dense)
    proba = det.predict_proba(test.X)
    prevalence = test.y.mean()
    assert auprc(test.y, proba) > max(0.6, 4 * prevalence)
    dense, chan = det.predict_dense(test.X)
    positive = test.y == 1
    # the dense probability localises spikes: higher inside true spike regions than in negative windows
    inside = dense[test.y_dense >= 0.5].mean()
    outside = dense[(test.y_dense == 0) & ~positive[:, None]].mean()
    assert inside > outside + 0.15
    assert roc_auc_score((test.y_dense >= 0.5).ravel(), dense.ravel()) > 0.75


# ---------------------------------------------------------------------------------------------- losses, sampler


def test_soft_focal_loss():
    logits = torch.tensor([0.0, 3.0, -3.0])
    bce = soft_focal_loss(logits, torch.tensor([0.5, 1.0, 0.0]), gamma=0.0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.tensor([0.5, 1.0, 0.0]), reduction="none"
    )
    torch.testing.assert_close(bce, expected)
    focal = soft_focal_loss(logits, torch.tensor([0.5, 1.0, 0.0]), gamma=2.0)
    assert focal[0] == pytest.approx(0.0)  # an exact "unsure" costs nothing more
    assert torch.all(focal[1:] < bce[1:] * 0.01)  # easy examples are down-weighted
    weighted = soft_focal_loss(torch.tensor([0.0]), torch.tensor([1.0]), gamma=0.0, pos_weight=3.0)
    assert weighted[0] == pytest.approx(3 * np.log(2), rel=1e-5)


def test_balanced_indices():
    y = np.r_[np.ones(5), np.zeros(995)]
    idx = balanced_indices(y, 1000, np.random.default_rng(0), positive_fraction=0.5)
    assert len(idx) == 1000 and (y[idx] == 1).mean() == pytest.approx(0.5)
    assert set(idx[y[idx] == 1]) == set(range(5))
    assert len(balanced_indices(np.zeros(10), 7, np.random.default_rng(0))) == 7


# ---------------------------------------------------------------------------------------------- metrics


def test_window_metrics_on_known_cases():
    y = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    perfect = np.array([0.1, 0.2, 0.9, 0.8, 0.1, 0.0, 0.3, 0.2])
    assert auprc(y, perfect) == pytest.approx(1.0)
    assert f1_at(y, perfect, 0.5) == pytest.approx(1.0)
    worst = 1 - perfect
    assert auprc(y, worst) < 0.3
    assert f1_at(y, np.zeros(8), 0.5) == 0.0
    # one false positive above both positives: precision 2/3 at recall 1
    assert f1_at(y, np.r_[perfect[:7], 0.95], 0.5) == pytest.approx(0.8)
    t, f1 = best_threshold(y, perfect)
    assert f1 == pytest.approx(1.0) and 0.3 < t <= 0.8
    assert np.isnan(auprc(np.zeros(4), np.ones(4)))
    assert auprc(np.array([0, 0.5, 1.0, 0.2]), np.array([0.1, 0.6, 0.9, 0.2])) == pytest.approx(1.0)  # soft -> 0/1
    report = evaluate(y, perfect)
    assert report.prevalence == pytest.approx(0.25) and report.to_dict()["auprc"] == pytest.approx(1.0)


def test_event_metrics_on_known_case():
    sfreq = 100.0
    true = np.zeros((2, 100))
    proba = np.zeros((2, 100))
    true[0, 10:20] = 1  # event 1: detected
    true[0, 60:70] = 1  # event 2: missed
    true[1, 30:40] = 1  # event 3: detected by a detection overlapping it partly
    proba[0, 12:18] = 0.9
    proba[0, 80:85] = 0.9  # a false positive
    proba[1, 35:45] = 0.7
    proba[1, 90:95] = 0.6  # a false positive
    m = event_metrics(proba, true, sfreq, threshold=0.5)
    assert m["n_events"] == 3 and m["sensitivity"] == pytest.approx(2 / 3)
    hours = 200 / sfreq / 3600
    assert m["false_positives_per_hour"] == pytest.approx(2 / hours)
    assert event_metrics(proba, true, sfreq, threshold=0.8)["sensitivity"] == pytest.approx(1 / 3)
    report = evaluate(true.max(axis=1), proba.max(axis=1), 0.5, proba, true, sfreq)
    assert report.sensitivity == pytest.approx(2 / 3)


def test_extract_regions():
    dense = np.zeros(256)
    dense[50:60] = 0.9
    dense[64:70] = 0.7  # 4-sample gap (16 ms) -> merged with the first
    dense[200:202] = 0.8  # 2 samples = 8 ms -> too short
    regions = extract_regions(dense, 256.0, threshold=0.5, onset_seconds=10.0)
    assert len(regions) == 1
    r = regions[0]
    assert r.start_seconds == pytest.approx(10 + 50 / 256) and r.end_seconds == pytest.approx(10 + 70 / 256)
    assert r.score == pytest.approx(0.9)
    assert extract_regions(np.zeros(10), 256.0) == []


@pytest.mark.parametrize("n_times", [64, 61])
@pytest.mark.parametrize("dilation", [1, 2, 3, 8])
def test_channels_last_convolution_equals_conv1d(n_times, dilation):
    conv = torch.nn.Conv1d(4, 5, 7, padding=3 * dilation, dilation=dilation)
    x = torch.randn(3, 4, n_times)
    torch.testing.assert_close(conv_nhwc(to_nhwc(x), conv).squeeze(2), conv(x), rtol=1e-5, atol=1e-5)


def test_channels_last_network_equals_the_plain_conv1d_network():
    """The channels-last forward computes what the module's Conv1d/BatchNorm1d layers would, in training too."""
    torch.manual_seed(0)
    net = ResNet1d(width=8, depth=3, kernel_size=5, dilation=(1, 2, 4), dropout=0.0)
    plain = copy.deepcopy(net)

    def reference(m: ResNet1d, x: torch.Tensor) -> torch.Tensor:
        x = m.stem(x)
        for b in m.blocks:
            out = torch.relu(b.bn1(b.conv1(x)))
            x = torch.relu(b.bn2(b.conv2(out)) + x)
        return m.head(x)

    x = torch.randn(6, 1, 50)
    for mode in (True, False):
        net.train(mode), plain.train(mode)
        torch.testing.assert_close(net(x), reference(plain, x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(net.blocks[1].bn2.running_mean, plain.blocks[1].bn2.running_mean)
    assert int(net.blocks[0].bn1.num_batches_tracked) == int(plain.blocks[0].bn1.num_batches_tracked) == 1
