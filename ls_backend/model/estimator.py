"""``SpikeDetector``: the channel-agnostic spike model behind a scikit-learn-like contract.

Input is ``X`` float32 ``[n_windows, n_chans, n_times]`` (robust-scaled, as the window store gives it). A channel
holding any NaN is absent (window sets pad patients with fewer channels with NaN channels). Internally every present
channel becomes one single-channel sequence ``[N, 1, n_times]`` for :class:`ResNet1d`, so a model trained on one
electrode layout runs on any other.

Aggregation (multiple-instance learning: a window label says *that* a spike is there, not on which channel or when):

* channel logit = smooth maximum over time of the channel's dense logits (:func:`smooth_max`, ``sharpness``);
* window logit = maximum over the present channels (``channel_pool="max"``, default) or a smooth maximum
  (``"lse"``: log-sum-exp at ``sharpness`` less the log of the channel count). Neither grows with the number of
  channels (a patient with 18 noisy derivations is not pushed towards "spike" against one with 8); the hard maximum
  names the channel that drove the decision (the smooth one ranked better from few labels, within the seed noise
  once the encoder is pretrained: ``docs/benchmarks.md``);
* window dense logit = maximum over channels of the dense logits, per time step: the spike regions of a
  pre-annotation. Each time step is capped by its channel's logit and by the window's, so regions are drawn exactly
  on the windows the model answers "Spike" (a smooth maximum never exceeds the maximum): a narrow peak that the
  smooth maximum over time discounts would otherwise draw regions on windows answered "No spike", a pre-annotation
  that contradicts itself. Whole-recording detection reads the per-channel dense logits uncapped
  (``predict_channel_dense``): capped, its events lost recall early (``docs/benchmarks.md``).

Window labels train the window logit (negatives push every channel and time step down, positives the best one up);
dense targets, when given, also train the window dense logit directly.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.base import clone as sklearn_clone

from .consistency import RATIO, ConsistencyTerm
from .losses import balanced_indices, soft_focal_loss
from .metrics import auprc
from .regions import Region, extract_regions
from .resnet1d import (
    PackedResNet1d,
    ResNet1d,
    count_parameters,
    flops_per_window,
    inference_network,
    module_device,
    smooth_max,
)
from .streams import map_in_streams, num_threads, retain_freed_memory

logger = logging.getLogger(__name__)

MAX_INFERENCE_BATCH = 256  # channel-windows per forward pass: 512 was no faster (benchmarks/bench_model.py)
ACCELERATOR_BATCH_FACTOR = 16  # an accelerator's forward passes take this many times the CPU's batch
ACTIVATION_BUDGET_BYTES = 4 << 20  # one layer's activations per forward pass
BACKGROUND_SAMPLE = 256  # unlabeled windows whose median logit bounds the prior correction
BACKGROUND_MIN_WINDOWS = 20  # fewer unlabeled windows: no bound (their median says little)


def prior_offset(prevalence: float, sampled: float) -> float:
    """The logit shift from training at the ``sampled`` spike fraction to data of spike ``prevalence``:
    log-odds(prevalence) - log-odds(sampled)."""
    return float(np.log(prevalence / (1 - prevalence)) - np.log(sampled / (1 - sampled)))


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when PyTorch sees a device, else the CPU) -> the
    device; a clear error for another name, or for CUDA where this PyTorch sees none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={name!r}, but this PyTorch sees no CUDA device (a CPU build, or no GPU): use 'cpu' or 'auto', "
            "or install the CUDA build of torch (docs/deployment.md)"
        )
    return device


def inference_batch_size(width: int, n_times: int) -> int:
    """Channel-windows per forward pass: a power of two keeping one activation ``[batch, width, n_times]`` float32
    within ``ACTIVATION_BUDGET_BYTES`` (16 to ``MAX_INFERENCE_BATCH``). ``benchmarks/bench_model.py`` measured
    the 16-wide default fastest from batch 256 on two streams (batch 64 was 10 % slower, 16 half as fast: the
    fixed cost of each call), and the 64-wide reference flat from 16 to 256."""
    fit = ACTIVATION_BUDGET_BYTES // max(1, width * n_times * 4)
    return int(min(MAX_INFERENCE_BATCH, max(16, 1 << max(0, int(fit).bit_length() - 1))))


def one_cycle(
    step: int,
    total: int,
    warmup: float = 0.1,
    start: float = 1 / 25,
    end: float = 1 / 25e4,
    beta1: tuple[float, float] = (0.85, 0.95),
) -> tuple[float, float]:
    """The learning rate of ``step`` in ``[0, total)`` as a fraction of the peak, and Adam's beta1: PyTorch's
    OneCycleLR policy (cosine; the rate rises from ``start`` until ``warmup * total - 1`` steps, then falls to ``end``;
    beta1 moves against it), which divides by zero when ``warmup * total`` is exactly 1: then the rate starts there."""
    peak = warmup * total - 1  # where the rate peaks: a fraction of a step, as in PyTorch
    rising = step <= peak
    if rising:
        low, high, frac = start, 1.0, step / peak if peak > 0 else 0.0
    else:
        low, high, frac = 1.0, end, (step - peak) / (total - 1 - peak)
    weight = (1 + math.cos(math.pi * min(frac, 1.0))) / 2  # 1 at the phase's start, 0 at its end
    momentum = beta1[0] + (beta1[1] - beta1[0]) * (weight if rising else 1 - weight)
    return high + (low - high) * weight, momentum


class OneCycle:
    """:func:`one_cycle` applied to an Adam-type optimizer (``step()`` after each optimizer step)."""

    def __init__(self, optimizer: torch.optim.Optimizer, total: int):
        self.optimizer = optimizer
        self.total = total
        self.step_num = 0
        self.peak = [group["lr"] for group in optimizer.param_groups]
        self._apply()

    def step(self) -> None:
        self.step_num += 1
        self._apply()

    def _apply(self) -> None:
        fraction, beta1 = one_cycle(min(self.step_num, self.total - 1), self.total)
        for group, peak in zip(self.optimizer.param_groups, self.peak):
            group["lr"] = peak * fraction
            group["betas"] = (beta1, group["betas"][1])


class Plateau:
    """Training to convergence: a one-epoch warm-up, then the full rate until the validation score has not improved
    for ``patience`` epochs; then a tenth of it from the best weights, and so on ``drops`` times before stopping."""

    def __init__(self, steps_per_epoch: int, drops: int = 3):
        self.warmup = steps_per_epoch
        self.drops_left = drops
        self.scale = 1.0

    def factor(self, step: int) -> float:
        return self.scale * min(1.0, (step + 1) / self.warmup)

    def drop(self) -> bool:
        """Lower the rate tenfold; False when no drop is left (stop)."""
        if self.drops_left == 0:
            return False
        self.drops_left -= 1
        self.scale /= 10
        return True


_NEG = -1e4  # logit of an absent channel (finite: keeps max/logsumexp gradients NaN-free)


def load_initial_weights(module: ResNet1d, state: dict) -> None:
    """``state`` into ``module``: a whole network's, or only its trunk's (no ``head.`` entries: the head stays as
    initialised); ValueError when it does not fit the architecture."""
    trunk_only = not any(key.startswith("head.") for key in state)
    try:
        missing, unexpected = module.load_state_dict(state, strict=not trunk_only)
    except RuntimeError as err:
        raise ValueError(f"init_from does not match this architecture: {err}") from None
    if unexpected or any(not key.startswith("head.") for key in missing):
        raise ValueError(f"init_from does not match this architecture: missing {missing}, unexpected {unexpected}")


class NotFittedError(RuntimeError):
    """The model has no learned weights yet (call ``fit`` or load a checkpoint)."""


def present_channels(X: np.ndarray) -> np.ndarray:
    """``[n_windows, n_chans]`` bool: channels without NaN (a NaN anywhere marks the channel absent)."""
    return np.isfinite(X).all(axis=-1)


class SpikeDetector(BaseEstimator):
    """Channel-agnostic 1-D ResNet spike detector (``fit`` / ``predict_proba`` / ``predict_dense`` / ``embed``).

    Architecture: ``width``, ``depth``, ``kernel_size``, ``dilation``, ``dropout`` (see :class:`ResNet1d`). The
    default (4 blocks, 16 wide, kernel 7, dilations 1-2-4-8: 0.73 s receptive field at 256 Hz, 7.4 MFLOP per
    channel-window) comes from ``benchmarks/capacity_study.py``: wider or deeper models were not better on the
    synthetic patients (within seed noise) and cost 2-30x more per channel-window; dilation was.
    Aggregation: ``sharpness`` of the smooth maximum over time, ``channel_pool`` ("max" or "lse").
    Training: ``epochs`` of ``samples_per_epoch`` windows (None: as many as the training set, at least
    ``min_epoch_samples``: a fit on 20 labels then takes as many steps as one on that many), ``batch_size``
    windows, AdamW ``lr`` and ``weight_decay`` with a one-cycle schedule (with ``patience`` and ``fit``'s
    ``eval_set``: training to convergence instead, see :class:`Plateau`), ``focal_gamma`` (0, the default: BCE,
    whose probabilities stay usable for pseudo-label thresholds; the imbalance is handled by balanced sampling),
    ``balanced_sampling`` with ``positive_fraction`` (``prior_correction`` shifts the logits back from the sampled
    to the true prevalence of the training labels, so 0.5 means even odds on real data; ``background_logit`` then
    caps it with ``fit``'s unlabeled windows, see :meth:`bound_background`), ``pos_weight`` (None: 1
    with balanced sampling, else n_negative / n_positive), ``dense_weight`` of the dense loss, ``freeze_blocks``
    (stem + first k blocks kept fixed when warm-starting), ``max_train_channels`` (see :meth:`_select_channels`;
    None: all), ``consistency_weight`` of the consistency term on ``fit``'s unlabeled windows with its confidence
    ``consistency_threshold`` (:mod:`~ls_backend.model.consistency`; 0: off), ``seed``.
    Inference: ``threshold`` for regions and F1, ``precision`` ("float32" or "bfloat16" autocast), ``n_threads``
    (None: torch's setting; inference runs that many single-threaded streams of batches, see
    :mod:`ls_backend.model.streams`). ``device`` where training and inference run (:func:`resolve_device`: "cpu",
    the default, "cuda" or "auto"; checkpoints hold CPU tensors either way). ``sfreq`` converts samples to seconds.
    """

    module_: ResNet1d  # set by fit or load
    _fused: tuple[ResNet1d, ResNet1d | PackedResNet1d] | None  # module_ and its inference form

    def __init__(
        self,
        width: int = 16,
        depth: int = 4,
        kernel_size: int = 7,
        dilation: int | tuple[int, ...] = (1, 2, 4, 8),
        dropout: float = 0.1,
        sharpness: float = 5.0,
        channel_pool: str = "max",
        epochs: int = 15,
        patience: int | None = None,
        samples_per_epoch: int | None = None,
        min_epoch_samples: int = 0,
        batch_size: int = 32,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        focal_gamma: float = 0.0,
        balanced_sampling: bool = True,
        positive_fraction: float = 0.5,
        prior_correction: bool = True,
        background_logit: float | None = -1.0,
        pos_weight: float | None = None,
        dense_weight: float = 1.0,
        freeze_blocks: int = 0,
        max_train_channels: int | None = 4,
        consistency_weight: float = 0.0,
        consistency_threshold: float = 0.95,
        threshold: float = 0.5,
        precision: str = "float32",
        n_threads: int | None = None,
        device: str = "cpu",
        sfreq: float = 256.0,
        seed: int = 0,
    ):
        self.width = width
        self.depth = depth
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.dropout = dropout
        self.sharpness = sharpness
        self.channel_pool = channel_pool
        self.epochs = epochs
        self.patience = patience
        self.samples_per_epoch = samples_per_epoch
        self.min_epoch_samples = min_epoch_samples
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.focal_gamma = focal_gamma
        self.balanced_sampling = balanced_sampling
        self.positive_fraction = positive_fraction
        self.prior_correction = prior_correction
        self.background_logit = background_logit
        self.pos_weight = pos_weight
        self.dense_weight = dense_weight
        self.freeze_blocks = freeze_blocks
        self.max_train_channels = max_train_channels
        self.consistency_weight = consistency_weight
        self.consistency_threshold = consistency_threshold
        self.threshold = threshold
        self.precision = precision
        self.n_threads = n_threads
        self.device = device
        self.sfreq = sfreq
        self.seed = seed

    # ------------------------------------------------------------------ parameters (get_params, set_params, repr:
    # scikit-learn's BaseEstimator)

    def clone(self, **changes: Any) -> SpikeDetector:
        """An unfitted copy with the same parameters (and ``changes``)."""
        return sklearn_clone(self).set_params(**changes)

    # ------------------------------------------------------------------ model

    def build_module(self) -> ResNet1d:
        """A fresh, untrained network with this model's architecture."""
        if self.channel_pool not in ("max", "lse"):
            raise ValueError(f"channel_pool must be 'max' or 'lse', got {self.channel_pool!r}")
        dilation = self.dilation if isinstance(self.dilation, int) else tuple(self.dilation)
        return ResNet1d(1, self.width, self.depth, self.kernel_size, dilation, self.dropout)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "module_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("this SpikeDetector is not fitted yet: call fit() or load a checkpoint")

    @property
    def n_parameters(self) -> int:
        return count_parameters(self.module_ if self.is_fitted else self.build_module())

    def flops_per_channel_window(self, n_times: int | None = None) -> int:
        """Forward FLOPs for one channel of one window (a window costs this times its channel count)."""
        n_times = n_times or getattr(self, "n_times_", None) or round(self.sfreq)
        return flops_per_window(n_times, self.width, self.depth, self.kernel_size)

    def _aggregate(self, dense: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dense logits of present channels ``[N, T]`` -> window logits ``[B]``, channel logits ``[B, C]``,
        window dense logits ``[B, T]``."""
        B, C = present.shape
        chan = dense.new_full((B, C), _NEG)
        chan[present] = smooth_max(dense, self.sharpness)
        full = dense.new_full((B, C, dense.shape[-1]), _NEG)
        full[present] = dense
        if self.channel_pool == "max":
            window = chan.max(dim=1).values
        else:
            n_present = present.sum(dim=1).clamp(min=1).to(dense.dtype)
            window = (torch.logsumexp(self.sharpness * chan, dim=1) - torch.log(n_present)) / self.sharpness
        return window, chan, full.max(dim=1).values

    # ------------------------------------------------------------------ training

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        dense_targets: np.ndarray | None = None,
        init_from: SpikeDetector | dict | None = None,
        eval_set: tuple[np.ndarray, np.ndarray] | None = None,
        X_unlabeled: np.ndarray | None = None,
    ) -> SpikeDetector:
        """Train on windows ``X`` with window labels ``y`` in [0, 1] (soft labels welcome).

        ``sample_weight`` weighs windows (pseudo-labels get less than human labels); ``dense_targets``
        ``[n, n_times]`` with NaN rows where unknown add a per-time-step loss; ``init_from`` (a fitted model or
        its ``state_dict``) warm-starts from its weights (same architecture), freezing ``freeze_blocks``; a state
        dict without the head's entries (a pretrained encoder, :mod:`~ls_backend.model.pretrain`) starts the trunk
        from it and the head fresh;
        ``eval_set`` ``(X_val, y_val)`` is scored each epoch and the best epoch's weights are kept; unlabeled windows
        ``X_unlabeled`` (same channels and length) add the consistency term when ``consistency_weight`` > 0.
        """
        X = np.asarray(X, np.float32)
        y = np.asarray(y, np.float32)
        if X.ndim != 3 or y.shape != (len(X),):
            raise ValueError(f"expected X [n, n_chans, n_times] and y [n], got {X.shape} and {y.shape}")
        if np.any((y < 0) | (y > 1)) or not np.all(np.isfinite(y)):
            raise ValueError("y must be in [0, 1]")
        present = present_channels(X)
        keep = present.any(axis=1)
        if not keep.all():
            logger.warning("fit: %d window(s) without any present channel left out", int((~keep).sum()))
        weight = np.ones(len(y), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
        weight = np.where(keep, weight, 0.0).astype(np.float32)
        dense = None
        if dense_targets is not None:
            dense = np.asarray(dense_targets, np.float32)
            if dense.shape != (len(X), X.shape[2]):
                raise ValueError(f"dense_targets must have shape {(len(X), X.shape[2])}, got {dense.shape}")
        device = resolve_device(self.device)
        with torch.random.fork_rng(devices=[]), num_threads(self.n_threads):
            torch.manual_seed(self.seed)
            module = self.build_module()
            if init_from is not None:
                state = init_from.module_.state_dict() if isinstance(init_from, SpikeDetector) else init_from
                load_initial_weights(module, state)
            module.to(device)
            self.module_ = module
            self.n_times_ = X.shape[2]
            self.history_: list[dict[str, float]] = []
            self.warm_started_ = init_from is not None
            self.logit_offset_ = self._prior_offset(y, weight)
            if self.epochs > 0 and weight.sum() > 0:
                consistency = self._consistency_term(X_unlabeled, X.shape[2])
                self._train(np.nan_to_num(X, nan=0.0), present, y, weight, dense, eval_set, consistency)
            module.eval()
            self._fused = None
        self.bound_background(X_unlabeled)
        return self

    def bound_background(self, X_unlabeled: np.ndarray | None) -> SpikeDetector:
        """Lower the prior correction until the median logit of the unlabeled windows ``X_unlabeled`` is at most
        ``background_logit`` (``fit`` does it with its own; fewer than ``BACKGROUND_MIN_WINDOWS``: unchanged).

        Spikes are in a minority of any recording's windows, so the typical unlabeled window is background. The
        labels' prevalence misjudges it where the clinician labeled many spikes (active learning asks for them): a
        briefly trained model holds background windows at a near-constant logit, and a correction that lifts that
        floor over the threshold makes every window a spike (``benchmarks/operating_point.py``).
        ``background_shift_``: how far the correction was lowered (0: the labels' prevalence held).
        """
        self.background_shift_ = 0.0
        if self.background_logit is None:
            return self
        median = self.background_median(X_unlabeled)
        if median is not None and median > self.background_logit:
            self.background_shift_ = median - self.background_logit
            self.logit_offset_ -= self.background_shift_
            logger.info("fit: prior correction lowered by %.2f (the median unlabeled window's logit was %.2f)",
                        self.background_shift_, median)  # fmt: skip
        return self

    def _prior_offset(self, y: np.ndarray, weight: np.ndarray) -> float:
        """log-odds(true prevalence) - log-odds(sampled prevalence), added to every logit at inference.

        The prevalence is that of the full-weight rows (a clinician's own labels) when there are any: rows of less
        weight (pseudo-labels, the members of a reviewed cluster) come in groups the model chose, and tens of
        accepted members would tilt it towards spikes (every window then above the threshold).
        """
        if not (self.prior_correction and self.balanced_sampling) or weight.sum() == 0:
            return 0.0
        used = weight >= 1 if (weight >= 1).any() else weight > 0
        prevalence = float(np.clip((y[used] >= 0.5).mean(), 1e-3, 1 - 1e-3))
        if prevalence in (1e-3, 1 - 1e-3):  # one class only: the sampler draws uniformly
            return 0.0
        return prior_offset(prevalence, float(np.clip(self.positive_fraction, 1e-3, 1 - 1e-3)))

    def background_median(self, X_unlabeled: np.ndarray | None) -> float | None:
        """The median window logit (prior correction included) of at most ``BACKGROUND_SAMPLE`` of ``X_unlabeled``,
        drawn with the model's seed; None for fewer than ``BACKGROUND_MIN_WINDOWS`` windows."""
        if X_unlabeled is None or len(X_unlabeled) < BACKGROUND_MIN_WINDOWS:
            return None
        rows = np.sort(np.random.default_rng(self.seed).permutation(len(X_unlabeled))[:BACKGROUND_SAMPLE])
        return float(np.median(self._run(np.asarray(X_unlabeled)[rows], want_dense=False)["window"]))

    def _consistency_term(self, X_unlabeled: np.ndarray | None, n_times: int) -> ConsistencyTerm | None:
        """The consistency term on ``X_unlabeled`` (None when off, or without unlabeled channel-windows)."""
        if self.consistency_weight <= 0 or X_unlabeled is None or not len(X_unlabeled):
            return None
        if np.ndim(X_unlabeled) != 3 or np.shape(X_unlabeled)[2] != n_times:
            raise ValueError(
                f"X_unlabeled must be windows [n, n_chans, {n_times}] like X, got shape {np.shape(X_unlabeled)}"
            )
        term = ConsistencyTerm(X_unlabeled, self.consistency_threshold, self.logit_offset_, self.sharpness, self.seed)
        return term if len(term) else None

    def _frozen_modules(self) -> list[torch.nn.Module]:
        if self.freeze_blocks <= 0:
            return []
        return [self.module_.stem, *list(self.module_.blocks)[: self.freeze_blocks]]

    def _select_channels(
        self, X: np.ndarray, present: np.ndarray, y: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """The channels of a batch to train on: at most ``max_train_channels`` per window.

        Training cost grows with the channel count, and most channels say nothing new: every channel of a
        negative window is negative (a random subset is as good as all), and a positive window's label is carried
        by its highest-scoring channels (the multiple-instance choice: the current model scores all present
        channels without gradients, a few times cheaper than training on them, and the top ones are trained).
        """
        k = self.max_train_channels
        counts = present.sum(axis=1)
        if k is None or counts.max() <= k:
            return present
        chosen = present.copy()
        crowded = np.flatnonzero(counts > k)
        positive = crowded[y[crowded] > 0]
        scores = rng.random(present.shape)
        if len(positive):
            module = self.module_
            was_training = module.training
            module.eval()
            with torch.no_grad():
                w, c = np.nonzero(present[positive])
                seq = torch.from_numpy(X[positive][w, c]).unsqueeze(1).to(module_device(module))
                logits = smooth_max(module(seq)[:, 0], self.sharpness).cpu().numpy()
            module.train(was_training)
            for part in self._frozen_modules():
                part.eval()
            scores[positive[w], c] = 2.0 + 1.0 / (1.0 + np.exp(-logits))  # above every random score
        scores = np.where(present, scores, -np.inf)
        top = np.argsort(-scores[crowded], axis=1)[:, :k]
        chosen[crowded] = False
        chosen[crowded[:, None], top] = True
        return chosen

    def _train(
        self,
        X: np.ndarray,
        present: np.ndarray,
        y: np.ndarray,
        weight: np.ndarray,
        dense: np.ndarray | None,
        eval_set: tuple[np.ndarray, np.ndarray] | None,
        consistency: ConsistencyTerm | None = None,
    ) -> None:
        module = self.module_
        device = module_device(module)
        frozen = self._frozen_modules()
        for part in frozen:
            for p in part.parameters():
                p.requires_grad_(False)
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        rng = np.random.default_rng(self.seed)
        usable = np.flatnonzero(weight > 0)
        n_epoch = self.samples_per_epoch or max(len(usable), self.min_epoch_samples)
        steps = max(1, math.ceil(n_epoch / self.batch_size))
        total = steps * self.epochs
        plateau = None if self.patience is None or eval_set is None else Plateau(steps)
        if plateau is None:
            scheduler: OneCycle | torch.optim.lr_scheduler.LambdaLR = OneCycle(optimizer, total)
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plateau.factor)
        labels = y[usable]
        n_pos = float((labels >= 0.5).sum())
        pos_weight = self.pos_weight
        if pos_weight is None:
            pos_weight = 1.0 if self.balanced_sampling or n_pos == 0 else (len(labels) - n_pos) / n_pos
        has_dense = None if dense is None else np.isfinite(dense).all(axis=1)
        best_score, best_state, best_epoch = -np.inf, None, 0
        for epoch in range(self.epochs):
            module.train()
            for part in frozen:
                part.eval()
            if self.balanced_sampling:
                order = usable[balanced_indices(labels, steps * self.batch_size, rng, self.positive_fraction)]
            else:
                order = usable[rng.permutation(np.resize(np.arange(len(usable)), steps * self.batch_size))]
            total_loss = 0.0
            for step in range(steps):
                idx = np.sort(order[step * self.batch_size : (step + 1) * self.batch_size])
                pres = torch.from_numpy(self._select_channels(X[idx], present[idx], y[idx], rng))
                xb = torch.from_numpy(X[idx])[pres].unsqueeze(1).to(device)
                d = module(xb)[:, 0]
                window, _, window_dense = self._aggregate(d, pres.to(device))
                yb, wb = torch.from_numpy(y[idx]).to(device), torch.from_numpy(weight[idx]).to(device)
                loss_w = soft_focal_loss(window, yb, self.focal_gamma, pos_weight, wb)
                loss = loss_w.sum() / max(float(weight[idx].sum()), 1e-6)
                if dense is not None and has_dense is not None and self.dense_weight > 0:
                    sel = has_dense[idx]
                    if sel.any():
                        sel_t = torch.from_numpy(sel).to(device)
                        target = torch.from_numpy(dense[idx][sel]).to(device)
                        loss_d = soft_focal_loss(window_dense[sel_t], target, self.focal_gamma, pos_weight).mean(dim=1)
                        w = wb[sel_t]
                        loss = loss + self.dense_weight * (loss_d * w).sum() / max(float(w.sum()), 1e-6)
                if consistency is not None and (term := consistency(module, RATIO * len(idx))) is not None:
                    loss = loss + self.consistency_weight * term
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total_loss += float(loss.detach())
            record = {"epoch": epoch + 1, "loss": total_loss / steps}
            if consistency is not None:
                record |= consistency.take_counts()  # per epoch
            if eval_set is not None:
                module.eval()
                self._fused = None  # the weights changed: refold
                record["val_auprc"] = auprc(eval_set[1], self.predict_proba(eval_set[0]))
                score = record["val_auprc"] if np.isfinite(record["val_auprc"]) else -record["loss"]
                if score > best_score:
                    best_score, best_state, best_epoch = score, copy.deepcopy(module.state_dict()), epoch
            self.history_.append(record)
            logger.debug("epoch %d: %s", epoch + 1, record)
            if plateau is not None and self.patience is not None and epoch - best_epoch >= self.patience:
                if not plateau.drop():
                    break
                if best_state is not None:
                    module.load_state_dict(best_state)  # go on from the best weights at a tenth of the rate
                best_epoch = epoch
        for p in module.parameters():
            p.requires_grad_(True)
        if best_state is not None:
            module.load_state_dict(best_state)

    # ------------------------------------------------------------------ inference

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.precision == "bfloat16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        if self.precision != "float32":
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {self.precision!r}")
        return contextlib.nullcontext()

    def _inference_module(self, device: torch.device) -> ResNet1d | PackedResNet1d:
        """The network in its inference form (:func:`~ls_backend.model.resnet1d.inference_network`: BatchNorm
        folded, fused and prepacked convolutions); rebuilt whenever ``module_`` is replaced (fit, load). On an
        accelerator: ``module_`` itself, moved there."""
        if device.type != "cpu":
            return self.module_.to(device).eval()
        self.module_.to(device)
        cached = getattr(self, "_fused", None)
        if cached is not None and cached[0] is self.module_:
            return cached[1].eval()
        fused = inference_network(self.module_)
        self._fused = (self.module_, fused)
        return fused

    def _run(
        self,
        X: np.ndarray,
        dropout: bool = False,
        want_dense: bool = True,
        want_embedding: bool = False,
        want_channel_dense: bool = False,
    ) -> dict[str, np.ndarray]:
        """Window, channel and dense logits (and driving-channel embeddings) for every window; with
        ``want_channel_dense``, also the dense logits of every channel ``[n, C, T]`` (absent channels ``_NEG``)."""
        self._check_fitted()
        X = np.asarray(X, np.float32)
        if X.ndim != 3:
            raise ValueError(f"expected X [n_windows, n_chans, n_times], got shape {X.shape}")
        n, C, T = X.shape
        present = present_channels(X)
        win_idx, chan_idx = np.nonzero(present)
        N = len(win_idx)
        device = resolve_device(self.device)
        module = self._inference_module(device)
        retain_freed_memory()
        if dropout:
            for m in module.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.train()
        chan_logit = np.full((n, C), _NEG, np.float32)
        dense_logit = np.full((n, T), _NEG, np.float32) if want_dense else None
        embeddings = np.zeros((N, module.embedding_dim), np.float32) if want_embedding else None
        channel_dense = np.full((n, C, T), _NEG, np.float32) if want_channel_dense else None
        seq_logit = np.empty(N, np.float32)
        batch = inference_batch_size(module.width, T) * (1 if device.type == "cpu" else ACCELERATOR_BATCH_FACTOR)

        def forward(first: int) -> np.ndarray:  # one batch in a stream: its dense logits
            with torch.inference_mode(), self._autocast(device):
                xb = torch.from_numpy(X[win_idx[first : first + batch], chan_idx[first : first + batch]])
                features, emb = module.forward_features(xb.unsqueeze(1).to(device))
                d = module.forward_head(features)[:, 0].float()
                seq_logit[first : first + len(xb)] = smooth_max(d, self.sharpness).cpu().numpy()
                if embeddings is not None:
                    embeddings[first : first + len(xb)] = emb.float().cpu().numpy()
                return d.cpu().numpy()

        # dropout draws come from torch's global generator: one stream keeps seeded MC dropout reproducible; an
        # accelerator takes one stream of large batches
        streams = 1 if dropout or device.type != "cpu" else (self.n_threads or torch.get_num_threads())
        try:
            with num_threads(self.n_threads if streams == 1 else None):
                for k, d in enumerate(map_in_streams(forward, range(0, N, batch), streams)):
                    first = k * batch
                    if channel_dense is not None:
                        channel_dense[win_idx[first : first + len(d)], chan_idx[first : first + len(d)]] = d
                    if dense_logit is not None:
                        capped = np.minimum(d, seq_logit[first : first + len(d), None])  # not above its channel
                        # channels of one window are contiguous (row-major order): reduce each run
                        w = win_idx[first : first + batch]
                        starts = np.flatnonzero(np.r_[True, w[1:] != w[:-1]])
                        rows = w[starts]
                        dense_logit[rows] = np.maximum(dense_logit[rows], np.maximum.reduceat(capped, starts, axis=0))
        finally:
            module.eval()
            self.module_.eval()
        chan_logit[win_idx, chan_idx] = seq_logit
        if self.channel_pool == "max":
            window_logit = chan_logit.max(axis=1)
        else:
            n_present = np.maximum(present.sum(axis=1), 1)
            scaled = self.sharpness * chan_logit.astype(np.float64)
            peak = scaled.max(axis=1, keepdims=True)
            lse = peak[:, 0] + np.log(np.exp(scaled - peak).sum(axis=1))
            window_logit = ((lse - np.log(n_present)) / self.sharpness).astype(np.float32)
        if dense_logit is not None:  # nor above its window: a region exactly where the answer is "Spike"
            np.minimum(dense_logit, window_logit[:, None], out=dense_logit)
        offset = np.float32(getattr(self, "logit_offset_", 0.0))
        out = {"window": window_logit + offset, "channel": chan_logit + offset, "present": present}
        if dense_logit is not None:
            out["dense"] = dense_logit + offset
        if channel_dense is not None:
            channel_dense += offset
            out["channel_dense"] = channel_dense
        if embeddings is not None:
            # the embedding of the channel that drove each window's decision
            driver = np.where(present, chan_logit, -np.inf).argmax(axis=1)
            row = {(wi, ci): k for k, (wi, ci) in enumerate(zip(win_idx, chan_idx))}
            emb = np.zeros((n, module.embedding_dim), np.float32)
            for i in range(n):
                position = row.get((i, int(driver[i])))
                if position is not None:
                    emb[i] = embeddings[position]
            out["embedding"] = emb
        return out

    @staticmethod
    def _sigmoid(z: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-np.clip(z, -80, 80)))).astype(np.float32)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Spike probability of each window ``[n]`` (aggregated over channels, see the module docstring)."""
        return self._sigmoid(self._run(X, want_dense=False)["window"])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 where the spike probability reaches ``threshold``."""
        return (self.predict_proba(X) >= self.threshold).astype(np.int64)

    def predict_dense(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-time-step probability ``[n, n_times]`` (max over channels) and per-channel probabilities
        ``[n, n_chans]`` (NaN for absent channels): which channels drove each decision."""
        out = self._run(X)
        chan = np.where(out["present"], self._sigmoid(out["channel"]), np.nan).astype(np.float32)
        return self._sigmoid(out["dense"]), chan

    def predict_channel_dense(self, X: np.ndarray) -> np.ndarray:
        """Per-channel, per-time-step probability ``[n, n_chans, n_times]`` (NaN for absent channels): where and on
        which channels the spikes are (:meth:`predict_dense`'s probability is its maximum over channels)."""
        out = self._run(X, want_dense=False, want_channel_dense=True)
        return np.where(out["present"][..., None], self._sigmoid(out["channel_dense"]), np.float32(np.nan))

    def predict_all(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """One pass for everything a pre-annotation needs: ``proba`` [n], ``dense`` [n, T], ``channel`` [n, C]
        (NaN absent), ``embedding`` [n, width]."""
        out = self._run(X, want_embedding=True)
        return {
            "proba": self._sigmoid(out["window"]),
            "dense": self._sigmoid(out["dense"]),
            "channel": np.where(out["present"], self._sigmoid(out["channel"]), np.nan).astype(np.float32),
            "embedding": out["embedding"],
        }

    def embed(self, X: np.ndarray) -> np.ndarray:
        """Penultimate features ``[n, width]`` of each window's driving channel (for diversity sampling)."""
        return self._run(X, want_dense=False, want_embedding=True)["embedding"]

    def mc_draws(self, X: np.ndarray, n_samples: int = 10, seed: int | None = None) -> np.ndarray:
        """Window probabilities ``[n_samples, n_windows]`` from ``n_samples`` passes with dropout on (MC dropout).

        Seeded (``seed``, else the model's ``seed``) without touching torch's global random state. BALD and
        query-by-committee need the draws themselves (``PoolView.mc_proba`` is their transpose, ``[n, S]``).
        """
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {n_samples}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed if seed is None else seed)
            return np.stack(
                [self._sigmoid(self._run(X, dropout=True, want_dense=False)["window"]) for _ in range(n_samples)]
            )

    def mc_dropout(self, X: np.ndarray, n_samples: int = 10, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the window probability over the MC-dropout draws (:meth:`mc_draws`)."""
        draws = self.mc_draws(X, n_samples, seed)
        return draws.mean(axis=0), draws.std(axis=0)

    def predict_regions(
        self, X: np.ndarray, onsets_seconds: np.ndarray | None = None, threshold: float | None = None
    ) -> list[list[Region]]:
        """Spike regions of each window (task seconds when ``onsets_seconds`` are given)."""
        dense, _ = self.predict_dense(X)
        onsets = np.zeros(len(dense)) if onsets_seconds is None else np.asarray(onsets_seconds, np.float64)
        t = self.threshold if threshold is None else threshold
        return [extract_regions(d, self.sfreq, t, onset_seconds=float(o)) for d, o in zip(dense, onsets)]
