"""Losses for rare positives with soft targets, and a class-balanced sampler."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def soft_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 2.0,
    pos_weight: float = 1.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-element focal loss for soft targets in [0, 1] (``gamma=0``: class-weighted BCE).

    The binary cross-entropy against a soft target ``t`` is scaled by ``|t - p| ** gamma`` (the focal factor
    generalised to soft targets: an exact prediction of an "unsure" 0.5 costs nothing more) and the positive part by
    ``pos_weight``. Returns the unreduced loss (times ``weight`` when given).
    """
    targets = targets.to(logits.dtype)
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    bce = -(pos_weight * targets * log_p + (1 - targets) * log_not_p)
    if gamma:
        p = torch.sigmoid(logits)
        bce = bce * (targets - p).abs().pow(gamma)
    if weight is not None:
        bce = bce * weight
    return bce


def balanced_indices(
    y: np.ndarray, n_samples: int, rng: np.random.Generator, positive_fraction: float = 0.5
) -> np.ndarray:
    """Indices drawn with replacement so that about ``positive_fraction`` of them are positives (``y >= 0.5``).

    Positives are rare: each epoch shows all of them several times and a fresh random part of the negatives.
    Without positives (or without negatives) it draws uniformly.
    """
    y = np.asarray(y)
    pos = np.flatnonzero(y >= 0.5)
    neg = np.flatnonzero(y < 0.5)
    if len(pos) == 0 or len(neg) == 0:
        return rng.integers(0, len(y), n_samples)
    n_pos = int(round(n_samples * positive_fraction))
    picks = np.concatenate([rng.choice(pos, n_pos), rng.choice(neg, n_samples - n_pos)])
    rng.shuffle(picks)
    return picks
