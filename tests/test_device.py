"""Training, inference and pretraining on an accelerator (``SpikeDetector(device=...)``): the names it takes, and on
a machine with CUDA, a model trained there that serves from a CPU checkpoint."""

import numpy as np
import pytest
import torch
from model_helpers import TINY, toy_windows

from ls_backend.model import SpikeDetector
from ls_backend.model.checkpoints import load_checkpoint, save_checkpoint
from ls_backend.model.estimator import resolve_device
from ls_backend.model.pretrain import PretrainParams, pretrain_encoder

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_device_names_are_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="got 'meta'"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda', but this PyTorch sees no CUDA device"):
            SpikeDetector(**TINY, device="cuda").fit(*toy_windows())


def test_checkpoints_leave_the_device_out(tmp_path):
    X, y = toy_windows()
    model = SpikeDetector(**TINY, device="auto").fit(X, y)
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model))
    assert loaded.device == "cpu"  # a checkpoint runs anywhere; the serving process says where
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-3)


@needs_cuda
def test_cuda_training_pretraining_and_inference(tmp_path):
    X, y = toy_windows(48, n_chans=6)
    dense = np.full((len(X), X.shape[2]), np.nan, np.float32)
    dense[::4] = 0.0
    params = TINY | {"max_train_channels": 2, "consistency_weight": 0.5, "consistency_threshold": 0.6}
    model = SpikeDetector(**params, device="cuda").fit(X, y, dense_targets=dense, X_unlabeled=X)
    assert next(model.module_.parameters()).is_cuda
    out = model.predict_all(X)
    assert out["proba"].shape == (len(X),) and np.isfinite(out["proba"]).all()
    assert model.mc_draws(X, n_samples=2, seed=1).shape == (2, len(X))
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model))
    np.testing.assert_allclose(loaded.predict_proba(X), out["proba"], atol=1e-3)  # the CPU's answer
    windows = X[:, 0]
    pairs = X[:, :2]
    for objective, data in (("contrastive", windows), ("masked", windows), ("neighbours", pairs)):
        encoder = pretrain_encoder(data, TINY | {"device": "cuda"}, PretrainParams(objective, steps=3, batch_size=8))
        assert all(v.device.type == "cpu" for v in encoder.state.values())
        SpikeDetector(**TINY, device="cuda").fit(X, y, init_from=encoder.state)
