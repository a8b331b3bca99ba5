"""Consistency training on unlabeled windows (FixMatch, Sohn et al. 2020), beside the supervised loss.

Each training step draws unlabeled channel-windows of the patient; the detector scores each as it is (the weak view,
no gradient) and, where it is confident (a prior-corrected probability of at least ``threshold`` or at most
``1 - threshold``), that hard answer becomes the target of a strongly distorted view of the same channel-window
(:func:`~ls_backend.model.views.random_view`: a small shift, an amplitude scale of up to 2x either way, a sign flip,
noise). Confident positives and confident negatives each weigh half of the term: the unlabeled windows are mostly
background, and without the balance the term would pull the model's prior towards "no spike", which the balanced
sampler and the prior correction of the supervised loss assume it does not.

The unit is the channel-window, as in the supervised loss's aggregation (the channel logit: a smooth maximum over
time), so a spike window's quiet channels count as the negatives they are.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .resnet1d import ResNet1d, module_device, smooth_max
from .views import random_view

RATIO = 2  # unlabeled channel-windows per labeled window of a batch (FixMatch's mu)
STRONG_SHIFT, STRONG_SCALE, STRONG_NOISE = 0.05, (0.5, 2.0), 0.2  # the strong view (see random_view)


class ConsistencyTerm:
    """The consistency loss over the present channels of unlabeled windows ``X`` ``[n, n_chans, n_times]``
    (NaN channels absent). ``offset``: the prior correction added to a logit before the threshold;
    ``sharpness``: the detector's smooth maximum over time. Counts what each call found confident."""

    def __init__(self, X: np.ndarray, threshold: float, offset: float, sharpness: float, seed: int = 0):
        if not 0.5 < threshold < 1:
            raise ValueError(f"consistency_threshold must be in (0.5, 1), got {threshold}")
        X = np.asarray(X, np.float32)
        present = np.isfinite(X).all(axis=-1)
        self.windows = torch.from_numpy(np.ascontiguousarray(X[present]))  # [channel-windows, n_times]
        self.logit_threshold = float(np.log(threshold / (1 - threshold)))
        self.offset = offset
        self.sharpness = sharpness
        self.generator = torch.Generator().manual_seed(seed)
        self.n_positive = 0
        self.n_negative = 0

    def __len__(self) -> int:
        return len(self.windows)

    def take_counts(self) -> dict[str, int]:
        """The confident channel-windows since the last call, positive and negative (the counts restart)."""
        counts = {"consistent_positive": self.n_positive, "consistent_negative": self.n_negative}
        self.n_positive = self.n_negative = 0
        return counts

    def __call__(self, module: ResNet1d, n: int) -> torch.Tensor | None:
        """The term for ``n`` random channel-windows (None when none is confident)."""
        x = self.windows[torch.randint(0, len(self.windows), (n,), generator=self.generator)]
        device = module_device(module)  # the views are drawn on the CPU (one generator)
        with torch.no_grad():
            weak = (smooth_max(module(x.unsqueeze(1).to(device))[:, 0], self.sharpness) + self.offset).cpu()
        positive, negative = weak >= self.logit_threshold, weak <= -self.logit_threshold
        confident = positive | negative
        if not confident.any():
            return None
        self.n_positive += int(positive.sum())
        self.n_negative += int(negative.sum())
        strong = random_view(x[confident], STRONG_SHIFT, STRONG_SCALE, STRONG_NOISE, self.generator)
        logits = smooth_max(module(strong.unsqueeze(1).to(device))[:, 0], self.sharpness)
        target = positive[confident].to(device=device, dtype=logits.dtype)
        losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        parts = [losses[target == t].mean() for t in (0.0, 1.0) if (target == t).any()]
        return 0.5 * torch.stack(parts).sum()
