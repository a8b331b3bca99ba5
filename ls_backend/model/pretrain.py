"""Self-supervised pretraining of the spike model's encoder on a patient's unlabeled windows.

The encoder is the :class:`~ls_backend.model.resnet1d.ResNet1d` trunk (stem and residual blocks) that
:meth:`SpikeDetector.embed` reads and the dense head sits on. It is pretrained contrastively (SimCLR, Chen et al.
2020; for EEG: Mohsenvand et al. 2020, Banville et al. 2021): two views are pulled together and pushed away from the
other windows of the batch (the NT-Xent loss). By default (``objective="neighbours"``) the two views are two
neighbouring channels of one window, which share a spike's field and not a single-contact artifact; with
``"contrastive"`` they are two random distortions of one single-channel window. Either way the views are distorted
in EEG-plausible ways that leave a spike a spike: a time shift (a crop), an amplitude scale, a sign flip (a bipolar
derivation's sign is the order of its two electrodes) and Gaussian noise. The pooled features are the time mean and
the time maximum of the feature map: the maximum is what the detector's smooth maximum reads, and what tells one
background window from another is mostly its transients (spikes, artifacts), so telling windows apart asks the
features for them. Why this objective rather than masked reconstruction is in ``docs/model.md``.

:func:`sample_channel_windows` draws a bounded number of random channel-windows from window stores (or arrays), so
memory does not grow with the recording; :func:`pretrain_encoder` trains a fixed number of steps on them;
``SpikeDetector.fit(init_from=encoder.state)`` then starts from the pretrained trunk with a fresh head.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..active.transients import TransientDetector
from .estimator import OneCycle, SpikeDetector, present_channels, resolve_device
from .resnet1d import ResNet1d, module_device
from .streams import num_threads
from .views import random_view

logger = logging.getLogger(__name__)

ENCODER_PREFIXES = ("stem.", "blocks.")  # the trunk's parameters in a ResNet1d state dict; the head is "head."
ENCODER_FORMAT = "spike-al-encoder"
READ_CHUNK = 256  # windows read from a store at once while sampling
ARCHITECTURE = ("width", "depth", "kernel_size", "dilation")  # the SpikeDetector parameters that shape the trunk


@dataclass(frozen=True)
class PretrainParams:
    """How pretraining runs: ``steps`` optimizer steps of ``batch_size`` channel-windows (two views each), AdamW
    ``lr`` and ``weight_decay`` (one-cycle schedule), NT-Xent ``temperature``, a ``projection_dim`` projection head
    (thrown away after pretraining); the views: a crop shifted by up to ``max_shift`` of the window, an amplitude
    scale in ``scale_range``, a sign flip, Gaussian noise of ``noise`` times the window's standard deviation.
    ``objective`` "masked" instead: spans of ``mask_span`` samples covering about ``mask_fraction`` of each window
    are zeroed and reconstructed from the feature map by a 1 x 1 convolution (mean squared error on them);
    ``objective`` "neighbours": contrastive, but the two views come from two neighbouring channels of one window
    (what a spike's field shares across contacts, and a single-contact artifact does not).
    ``n_windows``: channel-windows sampled from the recording (the memory bound); ``transient_share`` of them are
    the most transient channel of their window (the classical detector's peak over median), the rest a random one."""

    objective: str = "neighbours"
    mask_fraction: float = 0.25
    mask_span: int = 24
    steps: int = 300
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    projection_dim: int = 32
    max_shift: float = 0.125
    scale_range: tuple[float, float] = (0.7, 1.4)
    noise: float = 0.1
    n_windows: int = 20000
    transient_share: float = 0.0

    @property
    def pairs(self) -> bool:
        """Whether the objective learns from pairs of neighbouring channels (:func:`sample_channel_windows`)."""
        return self.objective == "neighbours"

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"pretraining objective must be one of {sorted(OBJECTIVES)}, got {self.objective!r}")
        if self.steps < 1 or self.batch_size < 2 or self.n_windows < 2:
            raise ValueError(
                f"pretraining needs steps >= 1, batch_size >= 2 and n_windows >= 2, got steps={self.steps}, "
                f"batch_size={self.batch_size}, n_windows={self.n_windows}"
            )
        if not 0 <= self.transient_share <= 1:
            raise ValueError(f"pretraining needs 0 <= transient_share <= 1, got {self.transient_share}")
        if not 0 <= self.max_shift < 0.5 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(
                f"pretraining needs 0 <= max_shift < 0.5 and 0 < scale_range[0] <= scale_range[1], got "
                f"max_shift={self.max_shift}, scale_range={self.scale_range}"
            )


@dataclass
class PretrainedEncoder:
    """A pretrained trunk: its ``state`` (``stem.*`` and ``blocks.*`` of a :class:`ResNet1d` state dict), the
    ``architecture`` it fits (SpikeDetector parameters), the loss of each step, and what it cost."""

    state: dict[str, torch.Tensor]
    architecture: dict[str, Any]
    losses: list[float] = field(default_factory=list)
    n_windows: int = 0
    seconds: float = 0.0

    def fits(self, model_params: Mapping[str, Any]) -> bool:
        """Whether a SpikeDetector with ``model_params`` has this encoder's architecture."""
        return self.architecture == architecture_of(model_params)


def architecture_of(model_params: Mapping[str, Any]) -> dict[str, Any]:
    """The encoder's architecture of a SpikeDetector with ``model_params`` (defaults filled in; JSON types)."""
    params = SpikeDetector(**{k: v for k, v in model_params.items() if k in ARCHITECTURE}).get_params()
    arch = {k: params[k] for k in ARCHITECTURE}
    arch["dilation"] = arch["dilation"] if isinstance(arch["dilation"], int) else list(arch["dilation"])
    return arch


def encoder_state(module: ResNet1d) -> dict[str, torch.Tensor]:
    """The trunk's entries of ``module``'s state dict (copies, on CPU)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items() if k.startswith(ENCODER_PREFIXES)}


class TrunkEmbedder:
    """Window embeddings ``[n, 2 * width]`` from a pretrained trunk alone, before any label (the cold-start
    ranking's diversity): each channel's :func:`pooled_features` (what the contrastive objective compares), then
    the maximum over the window's present channels (absent everywhere: zeros)."""

    def __init__(self, state: Mapping[str, torch.Tensor], model_params: Mapping[str, Any], batch_size: int = 512):
        detector = SpikeDetector(**{k: v for k, v in model_params.items() if k in (*ARCHITECTURE, "n_threads")})
        self.n_threads = detector.n_threads
        self.module = detector.build_module()
        self.module.load_state_dict(dict(state), strict=False)  # the trunk; the head stays untrained and unused
        self.module.eval()
        self.batch_size = batch_size

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float32)
        win, chan = np.nonzero(present_channels(X))
        per_channel = np.empty((len(win), 2 * self.module.embedding_dim), np.float32)
        with torch.inference_mode(), num_threads(self.n_threads):
            for first in range(0, len(win), self.batch_size):
                rows = slice(first, first + self.batch_size)
                per_channel[rows] = pooled_features(self.module, torch.from_numpy(X[win[rows], chan[rows]])).numpy()
        out = np.full((len(X), per_channel.shape[1]), -np.inf, np.float32)
        np.maximum.at(out, win, per_channel)
        out[~np.isfinite(out)] = 0.0
        return out


# ---------------------------------------------------------------------------------------------- data


class WindowSource(Protocol):
    """What windows are sampled from: a :class:`~converters.windows.WindowStore` (or an array, see
    :func:`sample_channel_windows`)."""

    def __len__(self) -> int: ...

    def read_rows(self, rows: np.ndarray) -> np.ndarray: ...


class ArraySource:
    """Windows ``[n, n_chans, n_times]`` in memory as a :class:`WindowSource`."""

    def __init__(self, X: np.ndarray):
        self.X = X

    def __len__(self) -> int:
        return len(self.X)

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.X[rows], np.float32)


def sample_channel_windows(
    sources: Sequence[WindowSource | np.ndarray],
    n: int,
    seed: int = 0,
    transient_share: float = 0.0,
    sfreq: float = 256.0,
    pairs: bool = False,
) -> np.ndarray:
    """``n`` random single-channel windows ``[n, n_times]`` (with ``pairs``: neighbouring channels ``[n, 2,
    n_times]``, see :func:`_one_channel_each`) drawn across ``sources`` (window stores, or arrays
    ``[n, n_chans, n_times]``) in proportion to their sizes: random windows, one usable channel of each (no NaN, not
    flat): for ``transient_share`` of them the channel where the classical detector's transient stands out most from
    its own background (:class:`~ls_backend.active.transients.TransientDetector` at the store's ``sfreq``, else
    ``sfreq``), for the others a random one. Stores are read ``READ_CHUNK`` windows at a time, so memory is ``n``
    channel-windows whatever the length of the recordings; windows are drawn with replacement when the sources hold
    fewer than ``n``."""
    wrapped = [ArraySource(s) if isinstance(s, np.ndarray) else s for s in sources]
    sizes = np.array([len(s) for s in wrapped], np.int64)
    if not len(wrapped) or sizes.sum() == 0:
        raise ValueError("pretraining needs at least one window store with windows")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, sizes / sizes.sum())
    parts = []
    for source, size, count in zip(wrapped, sizes, counts):
        if count == 0:
            continue
        rows = np.sort(rng.choice(size, count, replace=bool(count > size)))
        detector = TransientDetector(sfreq=float(getattr(source, "sfreq", sfreq))) if transient_share > 0 else None
        for first in range(0, len(rows), READ_CHUNK):
            X = source.read_rows(rows[first : first + READ_CHUNK])
            parts.append(_one_channel_each(X, rng, transient_share, detector, pairs))
    lengths = sorted({part.shape[-1] for part in parts})
    if len(lengths) > 1:
        raise ValueError(f"pretraining needs windows of one length; the window stores have {lengths} samples")
    windows = np.concatenate(parts)
    if not len(windows):
        what = "pair of neighbouring usable channels" if pairs else "usable channel"
        raise ValueError(f"pretraining found no {what} (every sampled channel was absent or flat)")
    return windows[rng.permutation(len(windows))]


def _one_channel_each(
    X: np.ndarray,
    rng: np.random.Generator,
    transient_share: float = 0.0,
    detector: TransientDetector | None = None,
    pairs: bool = False,
) -> np.ndarray:
    """One usable channel of each window ``[n, n_chans, n_times]`` (windows without one are left out): the most
    transient one (``detector``'s peak over median) for ``transient_share`` of the windows, else a random one. With
    ``pairs``, that channel and a usable neighbour (the next channel, else the previous: the next contact of a shaft,
    or the next bipolar derivation), ``[m, 2, n_times]``, from the windows that have one."""
    usable = np.isfinite(X).all(axis=2) & (np.nan_to_num(X).std(axis=2) > 1e-6)
    after = np.zeros_like(usable)
    after[:, :-1] = usable[:, 1:]
    before = np.zeros_like(usable)
    before[:, 1:] = usable[:, :-1]
    anchor = usable & (after | before) if pairs else usable
    keep = np.flatnonzero(anchor.any(axis=1))
    scores = rng.random(anchor[keep].shape)
    if detector is not None:
        transient = rng.random(len(keep)) < transient_share
        if transient.any():  # those rows rank their channels by how much the transient stands out (NaN: absent)
            scores[transient] = np.nan_to_num(detector.features(X[keep[transient]])[..., 1], nan=-np.inf)
    channel = np.where(anchor[keep], scores, -np.inf).argmax(axis=1)
    if not pairs:
        return np.ascontiguousarray(X[keep, channel], dtype=np.float32)
    partner = np.where(after[keep, channel], channel + 1, channel - 1)
    return np.ascontiguousarray(np.stack([X[keep, channel], X[keep, partner]], axis=1), dtype=np.float32)


# ---------------------------------------------------------------------------------------------- training


def augment(x: torch.Tensor, params: PretrainParams, generator: torch.Generator) -> torch.Tensor:
    """A random view (:func:`~ls_backend.model.views.random_view`) of each channel-window ``[B, T]`` with the
    pretraining's distortions."""
    return random_view(x, params.max_shift, params.scale_range, params.noise, generator)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view's partner among the ``2B - 1`` other views of the batch (cosine similarity over
    ``temperature``, cross-entropy)."""
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(-torch.inf)
    B = len(z1)
    target = torch.cat([torch.arange(B, 2 * B), torch.arange(B)]).to(z.device)
    return nn.functional.cross_entropy(sim, target)


def pooled_features(encoder: ResNet1d, x: torch.Tensor) -> torch.Tensor:
    """The time mean and the time maximum of the feature map of each channel-window of ``x`` ``[B, T]``:
    ``[B, 2 * width]``."""
    features, mean = encoder.forward_features(x.unsqueeze(1))
    return torch.cat([mean, features.amax(dim=-1)], dim=1)


class ContrastiveModel(nn.Module):
    """The encoder, its pooling (time mean and maximum of the feature map) and a projection head."""

    def __init__(self, encoder: ResNet1d, projection_dim: int):
        super().__init__()
        self.encoder = encoder
        width = encoder.embedding_dim
        self.projection = nn.Sequential(
            nn.Linear(2 * width, 2 * width), nn.ReLU(inplace=True), nn.Linear(2 * width, projection_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(pooled_features(self.encoder, x))

    def loss(self, x: torch.Tensor, params: PretrainParams, generator: torch.Generator) -> torch.Tensor:
        """NT-Xent between two random views of each channel-window of ``x`` ``[B, T]``, or of each pair's two
        channels (``[B, 2, T]``: neighbouring contacts of one window)."""
        first, second = (x[:, 0], x[:, 1]) if x.ndim == 3 else (x, x)
        device = module_device(self)  # the views are drawn on the CPU (one generator), the model runs on its device
        views = augment(first, params, generator).to(device), augment(second, params, generator).to(device)
        return nt_xent(self(views[0]), self(views[1]), params.temperature)


def span_mask(shape: tuple[int, int], params: PretrainParams, generator: torch.Generator) -> torch.Tensor:
    """``[B, T]`` bool: spans of ``mask_span`` samples at random starts, about ``mask_fraction`` of each row."""
    B, T = shape
    span = min(params.mask_span, T)
    n_spans = max(1, round(params.mask_fraction * T / span))
    starts = torch.randint(0, T - span + 1, (B, n_spans), generator=generator)
    positions = (starts[:, :, None] + torch.arange(span)).reshape(B, -1)
    mask = torch.zeros(B, T, dtype=torch.bool)
    return mask.scatter_(1, positions, True)


class MaskedModel(nn.Module):
    """The encoder and a 1 x 1 convolution reconstructing the signal from the feature map."""

    def __init__(self, encoder: ResNet1d):
        super().__init__()
        self.encoder = encoder
        self.decoder = nn.Conv1d(encoder.embedding_dim, 1, 1)

    def loss(self, x: torch.Tensor, params: PretrainParams, generator: torch.Generator) -> torch.Tensor:
        """Mean squared error of the reconstruction on the masked samples of ``x`` ``[B, T]`` (sign-flipped at
        random, as a bipolar derivation may be)."""
        sign = torch.where(torch.rand(len(x), 1, generator=generator) < 0.5, -1.0, 1.0)
        device = module_device(self)
        x = (x * sign).to(device)
        mask = span_mask((len(x), x.shape[1]), params, generator).to(device)
        features, _ = self.encoder.forward_features(x.masked_fill(mask, 0.0).unsqueeze(1))
        return ((self.decoder(features)[:, 0] - x) ** 2)[mask].mean()


OBJECTIVES = {"contrastive", "masked", "neighbours"}


def pretrain_encoder(
    windows: np.ndarray,
    model_params: Mapping[str, Any] | None = None,
    params: PretrainParams = PretrainParams(),
    seed: int = 0,
) -> PretrainedEncoder:
    """Pretrain the encoder of a SpikeDetector with ``model_params`` on single-channel ``windows`` ``[n, n_times]``
    (:func:`sample_channel_windows`) for ``params.steps`` steps; the threads are ``model_params["n_threads"]``
    (None: torch's setting), as in ``SpikeDetector.fit``."""
    params.check()
    model_params = dict(model_params or {})
    windows = np.asarray(windows, np.float32)
    pairs = params.pairs
    expected = "[n >= 2, 2, n_times] (pairs of neighbouring channels)" if pairs else "[n >= 2, n_times]"
    shape_ok = windows.ndim == 3 and windows.shape[1] == 2 if pairs else windows.ndim == 2
    if not shape_ok or len(windows) < 2 or not np.isfinite(windows).all():
        raise ValueError(f"pretraining expects finite channel-windows {expected}, got shape {windows.shape}")
    start = time.perf_counter()
    detector = SpikeDetector(**model_params)
    losses = []
    with torch.random.fork_rng(devices=[]), num_threads(detector.n_threads):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        trunk = detector.build_module()
        model = MaskedModel(trunk) if params.objective == "masked" else ContrastiveModel(trunk, params.projection_dim)
        model.to(resolve_device(detector.device))
        optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        schedule = OneCycle(optimizer, params.steps)
        data = torch.from_numpy(windows)
        batch = min(params.batch_size, len(windows))
        model.train()
        for step in range(params.steps):
            x = data[torch.randint(0, len(data), (batch,), generator=generator)]
            loss = model.loss(x, params, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if step % 50 == 0:
                logger.debug("pretraining step %d: loss %.3f", step, losses[-1])
        model.eval()
    encoder = PretrainedEncoder(
        encoder_state(model.encoder), architecture_of(model_params), losses, len(windows), time.perf_counter() - start
    )
    logger.info(
        "pretrained the encoder on %d channel-windows: %d steps, loss %.3f -> %.3f, %.0f s",
        len(windows),
        params.steps,
        np.mean(losses[:10]),
        np.mean(losses[-10:]),
        encoder.seconds,
    )
    return encoder


def pretrain_from_stores(
    stores: Sequence[WindowSource | np.ndarray],
    model_params: Mapping[str, Any] | None = None,
    params: PretrainParams = PretrainParams(),
    seed: int = 0,
    sfreq: float = 256.0,
) -> PretrainedEncoder:
    """:func:`sample_channel_windows` from a patient's window stores (or arrays, at ``sfreq``) as ``params`` asks,
    then :func:`pretrain_encoder`."""
    windows = sample_channel_windows(stores, params.n_windows, seed, params.transient_share, sfreq, params.pairs)
    return pretrain_encoder(windows, model_params, params, seed)


# ---------------------------------------------------------------------------------------------- files


def save_encoder(path: str | os.PathLike, encoder: PretrainedEncoder) -> Path:
    """Write ``encoder`` to ``path`` atomically (a temporary file, fsynced, then renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    payload = {
        "format": ENCODER_FORMAT,
        "architecture": encoder.architecture,
        "state_dict": encoder.state,
        "losses": torch.tensor(encoder.losses),
        "n_windows": encoder.n_windows,
        "seconds": encoder.seconds,
    }
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_encoder(path: str | os.PathLike) -> PretrainedEncoder:
    """The encoder saved at ``path`` (``torch.load(weights_only=True)``); ValueError naming the file when it is not
    one."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:  # missing, truncated, foreign: all mean "unusable"
        raise ValueError(f"{path}: not a readable pretrained encoder ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("format") != ENCODER_FORMAT:
        raise ValueError(f"{path}: not a pretrained encoder file (format {ENCODER_FORMAT!r} expected)")
    return PretrainedEncoder(
        dict(payload["state_dict"]),
        dict(payload["architecture"]),
        [float(v) for v in payload["losses"]],
        int(payload["n_windows"]),
        float(payload["seconds"]),
    )
