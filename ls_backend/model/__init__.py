"""The spike model: a channel-agnostic 1-D ResNet behind a scikit-learn-like estimator, its training strategies
(soft labels, pseudo-labels, cross-patient warm start), metrics and checkpoints. Never imports Flask."""

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .estimator import SpikeDetector
from .resnet1d import ResNet1d, flops_per_window

__all__ = [
    "CheckpointError",
    "ResNet1d",
    "SpikeDetector",
    "flops_per_window",
    "load_checkpoint",
    "save_checkpoint",
]
