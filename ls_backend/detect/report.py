"""The detection report: its figure (``report.png`` in a detection output) and the ``/detections/<project>`` page.

The figure shows the spike rate per contact grouped by electrode shaft (the irritative zone at a glance), the rate
over the whole recording, the averaged waveform of the most active channels (short snippets read from the window
stores around the spikes' peaks) and the key numbers. The page shows the project's latest detection output
(:func:`ls_backend.detect.exports.latest_detection`), behind the backend's basic auth like every other endpoint.
"""

from __future__ import annotations

import base64
import datetime
import io
import logging
import textwrap
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
from flask import Flask, Response
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from converters.windows import WindowStore

from ..budget.page import STYLE, message_page
from ..config import Settings
from ..project_state import ProjectState, read_json
from .exports import FIGURE_FILE, MARKER, RATES_FILE, is_detection_output, latest_detection, read_table

logger = logging.getLogger(__name__)

TOP_CHANNELS = 4  # channels whose averaged waveform the figure shows
SNIPPETS_PER_CHANNEL = 200  # spikes averaged per channel at most (evenly spread over the recording)
SNIPPET_SECONDS = 0.25  # each side of the peak
TIME_BINS_SECONDS = (60, 300, 900, 3600, 4 * 3600)  # the finest that gives at most MAX_TIME_BINS bins
MAX_TIME_BINS = 200
SPIKE_COLOR = "#c0392b"


@dataclass
class Detection:
    """A written detection output, as the figure and the page read it."""

    out: Path
    summary: dict  # detection.json
    rates: list[dict[str, str]]  # spike_rates.tsv
    events: dict[str, list[dict[str, str]]]  # each recording's <stem>_events.tsv

    @classmethod
    def load(cls, out: Path) -> Detection:
        out = Path(out)
        summary = read_json(out / MARKER)
        if summary is None or not is_detection_output(out):
            raise ValueError(f"{out}: not a detection output (no readable {MARKER})")
        events = {r["stem"]: read_table(out / f"{r['stem']}_events.tsv") for r in summary["recordings"]}
        return cls(out, summary, read_table(out / RATES_FILE), events)

    @property
    def recorded_minutes(self) -> float:
        return float(self.summary.get("duration_seconds", 0.0)) / 60

    def most_active(self, n: int) -> list[dict[str, str]]:
        """The ``n`` channels with the highest spike rate (ties: recording order), with at least one spike."""
        ranked = sorted(self.rates, key=lambda row: -_number(row["rate_per_minute"]))
        return [row for row in ranked[:n] if int(row["events"]) > 0]


def _duration(minutes: float) -> str:
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _number(text: str) -> float:
    return 0.0 if text == "n/a" else float(text)


def key_numbers(detection: Detection) -> list[tuple[str, str]]:
    """(name, value) rows shown by the figure and the page."""
    summary = detection.summary
    minutes = detection.recorded_minutes
    total = int(summary.get("events", 0))
    reviewed = sum(int(r.get("reviewed", 0)) for r in summary["recordings"])
    top = ", ".join(f"{r['channel']} ({_number(r['rate_per_minute']):.2f}/min)" for r in detection.most_active(3))
    return [
        ("Spikes", str(total)),
        ("Recordings", str(len(summary["recordings"]))),
        ("Recorded time", _duration(minutes)),
        ("Spikes per minute", f"{total / minutes:.2f}" if minutes > 0 else "n/a"),
        ("Confirmed by a clinician", str(reviewed)),
        ("Most active channels", top or "none"),
        ("Model", f"{summary.get('model_version', '?')} ({summary.get('model', '?')})"),
        ("Threshold", str(summary.get("threshold", "?"))),
        ("Detected", str(summary.get("created", "?"))),
    ]


# -- the figure --------------------------------------------------------------------------------------------


def plot_detections(out: Path) -> Path:
    """Write ``report.png`` into the detection output ``out`` (read from its tables and window stores)."""
    path = Path(out) / FIGURE_FILE
    path.write_bytes(figure_png(Detection.load(out)))
    return path


def figure_png(detection: Detection, dpi: int = 90) -> bytes:
    buffer = io.BytesIO()
    detection_figure(detection).savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def detection_figure(detection: Detection) -> Figure:
    figure = Figure(figsize=(14, 8), layout="constrained")
    grid = figure.add_gridspec(2, 3, width_ratios=[1.6, 1, 1])
    _rates_panel(figure.add_subplot(grid[0, :]), detection)
    _time_panel(figure.add_subplot(grid[1, 0]), detection)
    _waveform_panel(figure.add_subplot(grid[1, 1]), detection)
    _numbers_panel(figure.add_subplot(grid[1, 2]), detection)
    return figure


def _rates_panel(ax: Axes, detection: Detection) -> None:
    """Spike rate per channel as bars, one color and one gap per electrode shaft."""
    ax.set_title("Spike rate per channel, grouped by electrode shaft", pad=18)
    ax.set_ylabel("spikes per minute (peak channel)")
    shafts = list(dict.fromkeys(row["shaft"] for row in detection.rates))
    colors = [f"C{k % 10}" for k in range(len(shafts))]
    x, labels = 0, []
    for shaft, color in zip(shafts, colors):
        rows = [row for row in detection.rates if row["shaft"] == shaft]
        positions = np.arange(x, x + len(rows))
        ax.bar(positions, [_number(r["rate_per_minute"]) for r in rows], color=color, width=0.8)
        ax.text(positions.mean(), 1.0, shaft, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                color=color, fontweight="bold")  # fmt: skip
        labels += [(int(p), r["channel"]) for p, r in zip(positions, rows)]
        x += len(rows) + 1
    ax.set_xticks([p for p, _ in labels], [name for _, name in labels], rotation=90,
                  fontsize=max(4.0, min(8.0, 500 / max(1, len(labels)))))  # fmt: skip
    ax.set_xlim(-1, max(x - 1, 1))
    ax.margins(y=0.12)


def _time_panel(ax: Axes, detection: Detection) -> None:
    """All spikes per minute over time: clock time when every recording has a date, else hours from the start."""
    recordings = detection.summary["recordings"]
    starts = [_start(r) for r in recordings]
    on_clock = all(s is not None for s in starts)
    total = sum(float(r["duration_seconds"]) for r in recordings)
    bin_seconds = next((b for b in TIME_BINS_SECONDS if total / b <= MAX_TIME_BINS), TIME_BINS_SECONDS[-1])
    offset = 0.0
    for rec, start in zip(recordings, starts):
        duration = float(rec["duration_seconds"])
        edges = np.append(np.arange(0.0, duration, bin_seconds), duration)
        peaks = [float(row["peak"]) for row in detection.events[rec["stem"]]]
        counts, _ = np.histogram(peaks, edges)
        rate = counts / (np.diff(edges) / 60)
        if on_clock and start is not None:
            x = mdates.date2num([start + datetime.timedelta(seconds=float(e)) for e in edges])
        else:
            x = (offset + edges) / 3600
        ax.stairs(rate, x, color=SPIKE_COLOR, fill=True, alpha=0.8)
        offset += duration
    ax.set_title(f"Spike rate over the recording ({bin_seconds // 60:g}-minute bins)")
    ax.set_ylabel("spikes per minute (all channels)")
    if on_clock:
        ax.xaxis.set_major_locator(locator := mdates.AutoDateLocator())
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    else:
        ax.set_xlabel("hours from the start of the first recording")


def _start(recording: dict) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(recording["meas_date"]) if recording.get("meas_date") else None


def _waveform_panel(ax: Axes, detection: Detection) -> None:
    """The averaged waveform (mean, shaded +/- one standard deviation) of the most active channels."""
    ax.set_title("Averaged spike of the most active channels")
    ax.set_xlabel("ms from the peak")
    ax.set_ylabel("µV")
    missing = [r["store"] for r in detection.summary["recordings"] if not Path(r["store"]).is_file()]
    if missing:
        logger.warning("report: no waveforms from the window stores that are gone: %s", ", ".join(missing))
    drawn = 0
    for k, row in enumerate(detection.most_active(TOP_CHANNELS)):
        snippets, sfreq = spike_snippets(detection, row["channel"])
        if len(snippets) == 0:
            continue
        t = (np.arange(snippets.shape[1]) - snippets.shape[1] // 2) / sfreq * 1000
        mean, std = snippets.mean(axis=0), snippets.std(axis=0)
        ax.plot(t, mean, color=f"C{k}", label=f"{row['channel']} (n={len(snippets)})")
        ax.fill_between(t, mean - std, mean + std, color=f"C{k}", alpha=0.15)
        drawn += 1
    if drawn:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no spike, or the window stores\nwere not found", transform=ax.transAxes, ha="center",
                color="gray")  # fmt: skip


def spike_snippets(detection: Detection, channel: str) -> tuple[np.ndarray, float]:
    """µV ``[n, 2 * half + 1]`` around the peaks of at most SNIPPETS_PER_CHANNEL spikes peaking on ``channel``
    (from the recordings that share the first one's sampling rate), and that rate."""
    snippets: list[np.ndarray] = []
    sfreq = 0.0
    for rec in detection.summary["recordings"]:
        peaks = [float(r["peak"]) for r in detection.events[rec["stem"]] if r["channel"] == channel]
        if not peaks or channel not in rec["ch_names"] or (sfreq and rec["sfreq"] != sfreq):
            continue
        if not Path(rec["store"]).is_file():
            continue  # moved or deleted since the detection: said once by the caller
        try:
            store = WindowStore(rec["store"])
        except ValueError as err:
            logger.warning("report: no waveform from %s (%s)", rec["store"], err)
            continue
        with store:
            sfreq = store.sfreq
            snippets += _read_snippets(store, store.ch_names.index(channel), peaks)
    if not snippets:
        return np.zeros((0, 0), np.float32), sfreq
    chosen = np.linspace(0, len(snippets) - 1, min(len(snippets), SNIPPETS_PER_CHANNEL)).round().astype(int)
    return np.stack([snippets[i] for i in np.unique(chosen)]), sfreq


def _read_snippets(store: WindowStore, row: int, peaks: list[float]) -> list[np.ndarray]:
    half = round(SNIPPET_SECONDS * store.sfreq)
    signal = store.file["signal"]
    chosen = np.linspace(0, len(peaks) - 1, min(len(peaks), SNIPPETS_PER_CHANNEL)).round().astype(int)
    out = []
    for i in np.unique(chosen):
        center = round(peaks[i] * store.sfreq)
        if center - half >= 0 and center + half < signal.shape[1]:
            out.append(np.asarray(signal[row, center - half : center + half + 1], np.float32))
    return out


def _numbers_panel(ax: Axes, detection: Detection) -> None:
    ax.set_title("Key numbers")
    ax.axis("off")
    y = 1.0
    for name, value in key_numbers(detection):
        text = textwrap.fill(value, 30)
        ax.text(0.0, y, name, transform=ax.transAxes, va="top", fontsize=9, fontweight="bold")
        ax.text(0.56, y, text, transform=ax.transAxes, va="top", fontsize=9)
        y -= 0.075 * (text.count("\n") + 1) + 0.03


# -- the page ----------------------------------------------------------------------------------------------


def register_detections_page(app: Flask, settings: Settings) -> None:
    """Add the ``/detections/<project>`` route to the backend's app."""

    @app.get("/detections/<project>")
    def detections(project: str) -> Response:
        return detections_response(settings, project)


def detect_command(key: str) -> str:
    """The command that fills the page of project ``key``."""
    return f"python -m ls_backend.detect --project {key} <the patient's window stores>"


def detections_response(settings: Settings, project: str) -> Response:
    try:
        state = ProjectState.of(settings.model_dir, project)
    except ValueError:
        return message_page(400, "Not a project", f"“{project}” is not a Label Studio project id (a number).")
    out = latest_detection(state)
    if out is None:
        return message_page(
            200 if state.dir.is_dir() else 404,
            f"Project {state.key}: no detection yet",
            "Nobody has run the detection over this project's recordings yet (or its output folder was moved). "
            "Run it on the machine that holds the window stores:",
            after=f"<pre id='command'>{escape(detect_command(state.key))}</pre>",
        )
    try:
        detection = Detection.load(out)
    except (OSError, ValueError, KeyError) as err:
        logger.warning("project %s: cannot read the detection output %s (%s)", state.key, out, err)
        return message_page(500, "Unreadable detection", f"The detection output {out} cannot be read: {err}")
    return Response(detections_html(state.key, detection), 200, mimetype="text/html")


def detections_html(key: str, detection: Detection) -> str:
    """The whole page of a project's latest detection."""
    figure_path = detection.out / FIGURE_FILE
    png = figure_path.read_bytes() if figure_path.is_file() else figure_png(detection)
    numbers = "".join(
        f"<tr><th>{escape(k)}</th><td data-key='{escape(k)}'>{escape(v)}</td></tr>" for k, v in key_numbers(detection)
    )
    ranked = sorted(detection.rates, key=lambda row: -_number(row["rate_per_minute"]))
    rates = "".join(
        f"<tr><td>{escape(r['shaft'])}</td><td>{escape(r['channel'])}</td><td class='n'>{r['events']}</td>"
        f"<td class='n'>{r['involved']}</td><td class='n'>{_number(r['rate_per_minute']):.2f}</td></tr>"
        for r in ranked
    )
    recordings = "".join(
        f"<tr><td>{escape(r['stem'])}</td><td>{escape(str(r.get('meas_date') or 'n/a'))}</td>"
        f"<td class='n'>{float(r['duration_seconds']) / 3600:.2f}</td><td class='n'>{r['events']}</td>"
        f"<td class='n'>{r.get('reviewed', 0)}</td><td>{escape(str(r.get('source', '')))}</td></tr>"
        for r in detection.summary["recordings"]
    )
    summary = detection.summary
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Spikes found: project {key}</title><style>{STYLE}</style></head><body>
<h1>Spikes found in the whole recording (project {key})</h1>
<p class="verdict" id="summary">{escape(_summary_sentence(detection))}</p>
<table id="numbers">{numbers}</table>
<img id="figure" alt="Spike rate per channel grouped by shaft, over time, averaged waveforms and the key numbers"
 src="data:image/png;base64,{base64.b64encode(png).decode()}">
<h2>Spike rate per channel</h2>
<table id="rates"><tr><th>shaft</th><th>channel</th><th>spikes</th><th>involving</th><th>per minute</th></tr>
{rates}</table>
<h2>Recordings</h2>
<table id="recordings"><tr><th>recording</th><th>start</th><th>hours</th><th>spikes</th><th>confirmed</th>
<th>original file</th></tr>{recordings}</table>
<p class="note">A spike's peak channel is the channel where the detector's probability is highest; “involving”
counts every spike the channel takes part in. Detections above threshold {escape(str(summary.get("threshold")))}
by model {escape(str(summary.get("model_version")))}, {escape(str(summary.get("created")))}. The events, rates and
annotations for MNE and EDFbrowser are in <code id="out">{escape(str(detection.out))}</code> (see
docs/detection.md). <a id="report-link" href="../report/{key}">The label budget report</a>.</p>
</body></html>"""


def _summary_sentence(detection: Detection) -> str:
    total = int(detection.summary.get("events", 0))
    top = detection.most_active(1)
    where = f"; most on {top[0]['channel']} (shaft {top[0]['shaft']})" if top else ""
    return f"{total} spikes in {_duration(detection.recorded_minutes)} of recording{where}."
