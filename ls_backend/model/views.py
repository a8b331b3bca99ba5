"""Random views of single-channel windows that leave a spike a spike: what contrastive pretraining compares
(:mod:`~ls_backend.model.pretrain`) and what consistency training asks the detector to agree on
(:mod:`~ls_backend.model.consistency`)."""

from __future__ import annotations

import math

import torch


def random_view(
    x: torch.Tensor,
    max_shift: float,
    scale_range: tuple[float, float],
    noise: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """A random view of each channel-window ``[B, T]``: a crop shifted by up to ``max_shift`` of ``T`` (every view
    as long), an amplitude scale (log-uniform in ``scale_range``), a sign flip (a bipolar derivation's sign is the
    order of its two electrodes), Gaussian noise of ``noise`` times the view's standard deviation;
    ``[B, T - 2 * shift]``."""
    B, T = x.shape
    shift = int(max_shift * T)
    offsets = torch.randint(0, 2 * shift + 1, (B,), generator=generator)
    idx = offsets[:, None] + torch.arange(T - 2 * shift)[None, :]
    view = torch.gather(x, 1, idx)
    low, high = math.log(scale_range[0]), math.log(scale_range[1])
    scale = torch.exp(low + (high - low) * torch.rand(B, 1, generator=generator))
    sign = torch.where(torch.rand(B, 1, generator=generator) < 0.5, -1.0, 1.0)
    jitter = torch.randn(view.shape, generator=generator) * noise * view.std(dim=1, keepdim=True)
    return (view + jitter) * scale * sign
