"""The picture of one cluster for its review task (a PNG, inline in the task as a ``data:`` URI).

Top: the members' averaged waveform on the cluster's most involved channels (mean, with the 10th-90th percentile
band of the members), and where in the recordings the members occur (one strip per recording). Below: the
representative members (closest to the centre, ``R1``-``R3``) and the atypical ones (farthest, ``A1``-``A3``), each
``MEMBER_SECONDS`` around its peak on the channels of its shaft, every row at the patient's common amplitude scale
(clipped at +-gain, never rescaled), the peak channel in red, with a scale bar.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from contextlib import ExitStack

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from converters.tasks import _clock as clock
from converters.windows import WindowStore
from ls_backend.detect.exports import shafts_of

from .clusters import Cluster
from .members import Member

AVERAGED_CHANNELS = 3  # the most involved peak channels whose averaged waveform is drawn
AVERAGED_MEMBERS = 200  # members averaged at most (evenly spread over the cluster)
AVERAGE_SECONDS = 0.25  # each side of the peak in the averaged waveform
MEMBER_SECONDS = 1.0  # each side of the peak in a member's panel
MEMBER_CHANNELS = 8  # channels of a member's shaft shown at most (those nearest its peak channel)
BAND_PERCENTILES = (10, 90)
PEAK_COLOR = "#c0392b"
DPI = 72


def shown_label(slot: str, member: Member) -> str:
    """How a shown member is named on the picture and among the exclusion choices: ``R1 · LA2-LA3 · run-1
    00:01:23.450``."""
    return f"{slot} · {member.channel} · {member.recording} {clock(member.peak)}"


def shown_slots(cluster: Cluster) -> list[tuple[str, str]]:
    """``(slot, member id)`` of the members a review task shows: representatives R1.., then atypical A1.."""
    slots = [(f"R{k + 1}", m) for k, m in enumerate(cluster.representatives)]
    return slots + [(f"A{k + 1}", m) for k, m in enumerate(cluster.atypical)]


def cluster_png(cluster: Cluster, members: Mapping[str, Member], gain_uv: float) -> bytes:
    """The cluster's picture (see the module docstring) as PNG bytes."""
    with ExitStack() as stack:
        stores = _Stores(stack)
        figure = Figure(figsize=(13, 9.5), layout="constrained")
        grid = figure.add_gridspec(3, 3, height_ratios=[1, 1.25, 1.25])
        _average_panel(figure.add_subplot(grid[0, :2]), cluster, members, stores)
        _timeline_panel(figure.add_subplot(grid[0, 2]), cluster, members, stores)
        for k, (slot, member_id) in enumerate(shown_slots(cluster)):
            ax = figure.add_subplot(grid[1 + k // 3, k % 3])
            _member_panel(ax, slot, members[member_id], cluster, stores, gain_uv)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


class _Stores:
    """Window stores opened once per picture."""

    def __init__(self, stack: ExitStack):
        self.stack = stack
        self.open: dict[str, WindowStore] = {}

    def __getitem__(self, path: str) -> WindowStore:
        if path not in self.open:
            self.open[path] = self.stack.enter_context(WindowStore(path))
        return self.open[path]


def _average_panel(ax: Axes, cluster: Cluster, members: Mapping[str, Member], stores: _Stores) -> None:
    chosen = np.unique(np.linspace(0, cluster.size - 1, min(cluster.size, AVERAGED_MEMBERS)).round().astype(int))
    picked = [members[cluster.members[i]] for i in chosen]
    for k, channel in enumerate(list(cluster.peak_contacts)[:AVERAGED_CHANNELS]):
        snippets, sfreq = _snippets(picked, channel, stores)
        if not len(snippets):
            continue
        t = (np.arange(snippets.shape[1]) - snippets.shape[1] // 2) / sfreq * 1000
        low, high = np.percentile(snippets, BAND_PERCENTILES, axis=0)
        ax.fill_between(t, low, high, color=f"C{k}", alpha=0.15, linewidth=0)
        ax.plot(t, snippets.mean(axis=0), color=f"C{k}", label=f"{channel} (n={len(snippets)})")
    ax.axvline(0, color="gray", linewidth=0.6, linestyle=":")
    ax.set_title(f"Averaged waveform of {cluster.size} members, band: {BAND_PERCENTILES[0]}th-"
                 f"{BAND_PERCENTILES[1]}th percentile")  # fmt: skip
    ax.set_xlabel("ms from the peak")
    ax.set_ylabel("µV")
    ax.legend(fontsize=9, loc="lower right")


def _snippets(picked: Sequence[Member], channel: str, stores: _Stores) -> tuple[np.ndarray, float]:
    """µV around the peaks of ``picked`` on ``channel`` (those recorded on it, away from the recording's ends)."""
    out, sfreq = [], 256.0
    for member in picked:
        store = stores[member.store]
        if channel not in store.ch_names:
            continue
        sfreq = store.sfreq
        half = round(AVERAGE_SECONDS * sfreq)
        centre = round(member.peak * sfreq)
        signal = store.file["signal"]
        if centre - half >= 0 and centre + half < signal.shape[1]:
            out.append(np.asarray(signal[store.ch_names.index(channel), centre - half : centre + half + 1]))
    return (np.stack(out) if out else np.zeros((0, 0))), sfreq


def _timeline_panel(ax: Axes, cluster: Cluster, members: Mapping[str, Member], stores: _Stores) -> None:
    """Each recording a strip over its duration (minutes), a tick per member."""
    recordings: dict[str, list[float]] = {}
    lengths: dict[str, float] = {}
    for member_id in cluster.members:
        member = members[member_id]
        recordings.setdefault(member.recording, []).append(member.peak)
        if member.recording not in lengths:
            store = stores[member.store]
            lengths[member.recording] = store.file["signal"].shape[1] / store.sfreq
    names = sorted(recordings)
    for row, name in enumerate(names):
        ax.plot([0, lengths[name] / 60], [row, row], color="lightgray", linewidth=6, solid_capstyle="butt")
        ax.plot(np.array(recordings[name]) / 60, np.full(len(recordings[name]), row), "|", color=PEAK_COLOR,
                markersize=12)  # fmt: skip
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(-0.8, len(names) - 0.2)
    ax.set_xlabel("minutes from the recording's start")
    contacts = ", ".join(f"{name} {count}" for name, count in list(cluster.peak_contacts.items())[:4])
    ax.set_title(f"Shaft {cluster.shaft} · peaks: {contacts}", fontsize=10)


def _member_panel(ax: Axes, slot: str, member: Member, cluster: Cluster, stores: _Stores, gain_uv: float) -> None:
    store = stores[member.store]
    names = member_channels(store.ch_names, member.channel, cluster.shaft)
    rows = [store.ch_names.index(name) for name in names]
    sfreq = store.sfreq
    half = round(MEMBER_SECONDS * sfreq)
    start = round(member.peak * sfreq) - half
    page = np.clip(store.read_span(start, 2 * half)[rows], -gain_uv, gain_uv)
    t = (np.arange(2 * half) - half) / sfreq
    for k, trace in enumerate(page):
        ax.plot(t, trace - 2 * gain_uv * k, color=PEAK_COLOR if names[k] == member.channel else "black",
                linewidth=0.8)  # fmt: skip
    ax.set_yticks([-2 * gain_uv * k for k in range(len(names))], names, fontsize=8)
    for label, name in zip(ax.get_yticklabels(), names):
        if name == member.channel:
            label.set_color(PEAK_COLOR)
            label.set_fontweight("bold")
    ax.axvline(0, color="gray", linewidth=0.6, linestyle=":")
    bottom = -2 * gain_uv * (len(names) - 1) - gain_uv
    ax.set_ylim(bottom, gain_uv)
    ax.set_xlim(t[0], t[-1])
    ax.plot([t[-1] - 0.05] * 2, [bottom + 0.1 * gain_uv, bottom + 1.1 * gain_uv], color="black", linewidth=2)
    ax.text(t[-1] - 0.08, bottom + 0.6 * gain_uv, f"{gain_uv:g} µV", ha="right", va="center", fontsize=8)
    ax.set_xlabel("s from the peak")
    ax.set_title(shown_label(slot, member), fontsize=10)


def member_channels(ch_names: Sequence[str], peak_channel: str, shaft: str) -> list[str]:
    """The channels a member's panel shows: those of its shaft (recording order), at most ``MEMBER_CHANNELS``
    centred on the peak channel (the peak channel alone when it is not in the recording's shaft)."""
    shafts = shafts_of(list(ch_names))
    same = [name for name in ch_names if shafts[name] == shaft] or [peak_channel]
    if peak_channel not in same:
        return [peak_channel]
    at = same.index(peak_channel)
    first = min(max(0, at - MEMBER_CHANNELS // 2), max(0, len(same) - MEMBER_CHANNELS))
    return same[first : first + MEMBER_CHANNELS]
