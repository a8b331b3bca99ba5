"""A 1-D ResNet over one channel (or bipolar derivation) at a time, with a dense per-time-step logit.

The network never sees the electrode layout: it reads ``[batch, 1, n_times]`` and the estimator
(:mod:`ls_backend.model.estimator`) runs it on every channel of a window and aggregates. No striding or pooling
inside: the feature map keeps the input's time resolution, so the dense head gives a logit per sample (spike
regions come from it) and the window logit is a smooth maximum of the dense logits over time.

``forward_features`` gives the feature map and the pooled embedding (timm's convention; the embedding feeds
diversity sampling), ``forward_head`` the dense logits. :func:`inference_network` gives the form inference runs:
BatchNorm folded, each convolution one oneDNN call with its ReLU or residual add fused and its weights prepacked.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Sequence
from typing import cast

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def block_dilations(dilation: int | Sequence[int], depth: int) -> list[int]:
    """Dilation of each block: one int for all, or a sequence cycled over the blocks ((1, 2, 4, 8) with depth 6
    gives 1, 2, 4, 8, 1, 2)."""
    cycle = [dilation] if isinstance(dilation, int) else [int(d) for d in dilation]
    if not cycle or min(cycle) < 1:
        raise ValueError(f"dilation must be a positive int or a non-empty sequence of them, got {dilation!r}")
    return [cycle[i % len(cycle)] for i in range(depth)]


def conv_nhwc(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv`` ('same' padding, stride 1, any dilation) on a channels-last feature map ``[B, C, 1, T]``.

    The 1-D convolution runs as a ``1 x k`` 2-D one in channels-last memory: oneDNN's kernels for that layout
    ran 16-wide convolutions 2-4x faster on CPU than PyTorch's 1-D (NCW) path, dilated ones included. The
    parameters stay those of the ``Conv1d`` (checkpoints do not change)."""
    k, d = conv.kernel_size[0], conv.dilation[0]
    return nn.functional.conv2d(x, conv.weight.unsqueeze(2), conv.bias, padding=(0, d * (k - 1) // 2), dilation=(1, d))


def batch_norm(x: torch.Tensor, bn: nn.Module) -> torch.Tensor:
    """``bn`` (a ``BatchNorm1d``, or ``Identity`` once fused) on a 4-D feature map, as ``BatchNorm1d`` would."""
    if not isinstance(bn, nn.BatchNorm1d):
        return bn(x)
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(bn.num_batches_tracked)
    training = bn.training or bn.running_mean is None
    return nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training, momentum, bn.eps)


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T]`` -> channels-last ``[B, C, 1, T]``."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-dropout-conv-BN plus the identity, then ReLU ('same' padding, time resolution kept)."""

    def __init__(self, width: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.conv1 = nn.Conv1d(width, width, kernel_size, padding=pad, dilation=dilation, bias=False)
        self.bn1: nn.Module = nn.BatchNorm1d(width)  # Identity once folded (fuse_batchnorm)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(width, width, kernel_size, padding=pad, dilation=dilation, bias=False)
        self.bn2: nn.Module = nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: a channels-last ``[B, width, 1, T]`` feature map (see :func:`conv_nhwc`)."""
        out = batch_norm(conv_nhwc(x, self.conv1), self.bn1).relu_()
        out = batch_norm(conv_nhwc(self.drop(out), self.conv2), self.bn2)
        return out.add_(x).relu_()


class ResNet1d(nn.Module):
    """1-D ResNet for single-channel windows ``[B, 1, n_times]`` -> dense logits ``[B, n_outputs, n_times]``.

    Parameters: ``width`` feature channels, ``depth`` residual blocks, ``kernel_size`` (odd), ``dilation`` (one
    int for every block or a sequence cycled over the blocks, see :func:`block_dilations`), ``dropout`` inside
    blocks (also used for MC dropout).
    """

    def __init__(
        self,
        n_outputs: int = 1,
        width: int = 32,
        depth: int = 4,
        kernel_size: int = 7,
        dilation: int | Sequence[int] = 1,
        dropout: float = 0.1,
        n_chans: int = 1,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        if depth < 0 or width < 1:
            raise ValueError(f"need depth >= 0 and width >= 1, got depth={depth}, width={width}")
        self.n_outputs = n_outputs
        self.width = width
        self.stem = nn.Sequential(
            nn.Conv1d(n_chans, width, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.ModuleList(
            ResidualBlock(width, kernel_size, d, dropout) for d in block_dilations(dilation, depth)
        )
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Conv1d(width, n_outputs, 1)

    @property
    def embedding_dim(self) -> int:
        return self.width

    @property
    def stem_conv(self) -> nn.Conv1d:
        return cast(nn.Conv1d, self.stem[0])  # nn.Sequential types its items as Module

    @property
    def residual_blocks(self) -> Iterable[ResidualBlock]:
        return cast("Iterable[ResidualBlock]", self.blocks)  # nn.ModuleList types its items as Module

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature map ``[B, width, n_times]`` and its time-averaged embedding ``[B, width]``."""
        x = batch_norm(conv_nhwc(to_nhwc(x), self.stem_conv), self.stem[1]).relu_()
        x = x.contiguous(memory_format=torch.channels_last)  # from one input channel it may come out NCHW
        for block in self.blocks:
            x = block(x)
        x = x.squeeze(2)
        return x, x.mean(dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Dense logits ``[B, n_outputs, n_times]`` from the feature map."""
        return conv_nhwc(self.head_drop(features).unsqueeze(2), self.head).squeeze(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)[0])


def smooth_max(logits: torch.Tensor, sharpness: float, dim: int = -1) -> torch.Tensor:
    """``log(mean(exp(sharpness * x))) / sharpness`` along ``dim``: between the mean and the max (the max as
    sharpness grows), with a gradient to every element; independent of the length for a constant input."""
    n = logits.shape[dim]
    return (torch.logsumexp(sharpness * logits, dim=dim) - torch.log(torch.tensor(float(n)))) / sharpness


def receptive_field(depth: int, kernel_size: int, dilation: int | Sequence[int] = 1) -> int:
    """Samples of input that one output sample sees (stem + two convolutions per block)."""
    return kernel_size + sum(2 * d * (kernel_size - 1) for d in block_dilations(dilation, depth))


def flops_per_window(
    n_times: int, width: int = 32, depth: int = 4, kernel_size: int = 7, n_outputs: int = 1, n_chans: int = 1
) -> int:
    """Multiply-adds x 2 of one forward pass over one single-channel window (convolutions only; BN/ReLU are
    elementwise and negligible)."""
    stem = 2 * n_chans * width * kernel_size * n_times
    blocks = depth * 2 * (2 * width * width * kernel_size * n_times)
    head = 2 * width * n_outputs * n_times
    return stem + blocks + head


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def module_device(module: nn.Module) -> torch.device:
    """The device ``module``'s parameters are on."""
    return next(module.parameters()).device


def fuse_batchnorm(module: ResNet1d) -> ResNet1d:
    """An eval-mode copy of ``module`` with every BatchNorm folded into the convolution before it (inference only;
    dropout modules are kept, so MC dropout still works)."""
    fused = copy.deepcopy(module).eval()
    fused.stem[0] = _fold(fused.stem_conv, fused.stem[1])
    fused.stem[1] = nn.Identity()
    for block in fused.residual_blocks:
        block.conv1 = _fold(block.conv1, block.bn1)
        block.bn1 = nn.Identity()
        block.conv2 = _fold(block.conv2, block.bn2)
        block.bn2 = nn.Identity()
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


def _fold(conv: nn.Conv1d, bn: nn.Module) -> nn.Conv1d:
    """``conv`` with the ``BatchNorm1d`` after it folded in (typed Module: it is Identity once folded)."""
    return fuse_conv_bn_eval(conv, cast(nn.BatchNorm1d, bn))


def fused_kernels_available() -> bool:
    """Whether this PyTorch build has oneDNN's fused convolutions (CPU builds with MKL-DNN do)."""
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._convolution_pointwise is not None
    except (AttributeError, RuntimeError):
        return False


_pad_buffers = threading.local()


def zero_padded(x: torch.Tensor, pad: int) -> torch.Tensor:
    """A channels-last ``[B, C, 1, T]`` map with ``pad`` zeros before and after in time, in a buffer of the calling
    thread reused while the shape stays (only its middle is ever written, so the margins stay zero). The next
    call with the same ``pad`` in this thread overwrites it."""
    B, C, _, T = x.shape
    shape = (B, C, 1, T + 2 * pad)
    by_pad = _pad_buffers.__dict__.setdefault("by_pad", {})
    buffer = by_pad.get(pad)
    if buffer is None or tuple(buffer.shape) != shape:
        buffer = by_pad[pad] = torch.zeros(shape).contiguous(memory_format=torch.channels_last)
    buffer[..., pad : pad + T].copy_(x)
    return buffer


class PackedConv:
    """A 'same'-padded ``Conv1d`` as one oneDNN call on a channels-last ``[B, C, 1, T]`` map, with its ReLU (or
    residual add then ReLU) fused into the same pass and its weights reordered once into oneDNN's blocked layout.

    A snapshot of the weights, for inference: float32 on CPU, no gradient. Unfused, each block wrote and reread its
    feature map for the ReLU and the add, and every call reordered the weights. A dilated convolution pads its input
    with zeros first and runs unpadded: oneDNN's border path covers ``dilation * (k - 1) / 2`` samples at each end
    (a fifth of a 256-sample window at dilation 8), and with it the dilated layers ran 25-40 % slower than the
    undilated ones, far more than the copy costs."""

    def __init__(self, conv: nn.Conv1d, typical_batch: int = 64, typical_length: int = 256):
        k, d = conv.kernel_size[0], conv.dilation[0]
        pad = d * (k - 1) // 2
        self.explicit_padding = pad if d > 1 else 0
        self.padding, self.dilation = [0, pad - self.explicit_padding], [1, d]
        weight = conv.weight.detach().unsqueeze(2).contiguous()
        shape = [typical_batch, conv.in_channels, 1, typical_length]  # picks the layout; any shape runs
        reorder = torch.ops.mkldnn._reorder_convolution_weight
        self.weight = reorder(weight, self.padding, [1, 1], self.dilation, 1, shape)
        self.bias = None if conv.bias is None else conv.bias.detach().clone()

    def __call__(self, x: torch.Tensor, activation: str = "relu", residual: torch.Tensor | None = None) -> torch.Tensor:
        """``relu(conv(x))`` (``activation="none"``: ``conv(x)``), or ``relu(conv(x) + residual)``."""
        if self.explicit_padding:
            x = zero_padded(x, self.explicit_padding)
        conv = torch.ops.mkldnn._convolution_pointwise
        args = (self.weight, self.bias, self.padding, [1, 1], self.dilation, 1)
        if residual is None:
            return conv(x, *args, activation, [], "")
        return conv.binary(x, residual, *args, "add", 1.0, "relu", [], "")


class PackedResNet1d(nn.Module):
    """Inference form of a BatchNorm-folded :class:`ResNet1d` (see :func:`inference_network`): the same function
    with :class:`PackedConv` convolutions. Its dropout modules are the network's, so MC dropout works as before;
    inputs the fused kernels do not take (autocast, gradients, not float32 on CPU) run through the network itself."""

    def __init__(self, network: ResNet1d):
        super().__init__()
        self.network = network
        self.packed_stem = PackedConv(network.stem_conv)
        self.packed_blocks = [(PackedConv(b.conv1), PackedConv(b.conv2)) for b in network.residual_blocks]
        # the 1 x 1 head as one matrix product over the channels-last map: oneDNN's 1 x 1 convolution with a
        # single output channel took 2-4x longer
        self.head_weight = network.head.weight.detach()[:, :, 0].t().contiguous()
        self.head_bias = cast(torch.Tensor, network.head.bias).detach().clone()  # the head has a bias

    @property
    def width(self) -> int:
        return self.network.width

    @property
    def embedding_dim(self) -> int:
        return self.network.embedding_dim

    @staticmethod
    def _takes(x: torch.Tensor) -> bool:
        return (
            x.dtype == torch.float32
            and x.device.type == "cpu"
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
        )

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`ResNet1d.forward_features`."""
        if not self._takes(x):
            return self.network.forward_features(x)
        x = self.packed_stem(to_nhwc(x)).contiguous(memory_format=torch.channels_last)
        for block, (conv1, conv2) in zip(self.network.residual_blocks, self.packed_blocks):
            x = conv2(block.drop(conv1(x)), residual=x)
        x = x.squeeze(2)
        return x, x.mean(dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """As :meth:`ResNet1d.forward_head`."""
        if not self._takes(features):
            return self.network.forward_head(features)
        B, C, T = features.shape
        rows = self.network.head_drop(features).transpose(1, 2).reshape(B * T, C)  # a view when channels-last
        return torch.addmm(self.head_bias, rows, self.head_weight).view(B, T, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)[0])


def inference_network(module: ResNet1d) -> ResNet1d | PackedResNet1d:
    """The fastest eval-mode form of ``module`` for CPU inference: :class:`PackedResNet1d` over
    :func:`fuse_batchnorm` where the fused kernels exist, else the BatchNorm-folded network alone."""
    fused = fuse_batchnorm(module)
    return PackedResNet1d(fused) if fused_kernels_available() else fused
