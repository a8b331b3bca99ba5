"""Spike events: one per spike, from per-sample, per-channel probabilities (see :class:`Event`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """One detected spike. Times in seconds from the start of its recording.

    ``channels``: every involved channel with its highest probability during the event, highest first (the peak
    channel first); ``probability``: the event's highest probability; ``reviewed``: "" (the model's),
    "confirmed" (in a window a clinician labeled as a spike)."""

    onset: float
    duration: float
    peak: float
    peak_channel: str
    probability: float
    channels: dict[str, float] = field(default_factory=dict)
    reviewed: str = ""
    model_version: str = ""
