"""Label Studio labeling configurations, generated for a patient's channel list.

The names and label values here are the vocabulary shared with the ML backend (which parses annotations and
writes pre-annotations with them): change them in this one place.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import quoteattr

TS_NAME = "ts"  # the <TimeSeries> tag and the task data key holding the display series
TIME_COLUMN = "time"
REGION_NAME = "region"  # <TimeSeriesLabels>: spike regions
WINDOW_NAME = "window"  # <Choices>: the window-level answer
CHANNELS_NAME = "channels"  # per-region <Choices>: which channels show the event

REGION_LABELS = {"Spike": "#d62728", "Sharp wave": "#ff7f0e", "Artifact": "#7f7f7f"}
WINDOW_CHOICES = ("Spike", "No spike", "Unsure")
EPILEPTIFORM_LABELS = ("Spike", "Sharp wave")

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "label_config" / "spike_timeseries.xml"


def channel_key(index: int) -> str:
    """Data key of channel ``index``: lowercase ASCII (the editor lowercases column names; capitals crash it)."""
    return f"ch{index}"


def channel_height_px(n_chans: int) -> int:
    return max(32, min(100, 1100 // max(1, n_chans)))


def make_label_config(ch_names: list[str], channel_attribution: bool = True) -> str:
    """The labeling configuration for windows with these channels (real names shown as legends)."""
    if not ch_names:
        raise ValueError("a label config needs at least one channel")
    height = channel_height_px(len(ch_names))
    last = len(ch_names) - 1
    channels = "\n".join(  # one time axis, under the last channel: the others get the vertical space
        f'      <Channel column="{channel_key(i)}" legend={quoteattr(name)} units="uV" '
        f'displayFormat=",.1f" height="{height}" strokeColor="#1f3b73" showAxis="{str(i == last).lower()}"/>'
        for i, name in enumerate(ch_names)
    )
    labels = "\n".join(
        f"    <Label value={quoteattr(value)} background={quoteattr(color)}/>" for value, color in REGION_LABELS.items()
    )
    choices = "\n".join(f"    <Choice value={quoteattr(value)}/>" for value in WINDOW_CHOICES)
    attribution = ""
    if channel_attribution:
        per_region = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in ch_names)
        attribution = (
            f'  <Choices name="{CHANNELS_NAME}" toName="{TS_NAME}" perRegion="true" choice="multiple" '
            f'showInline="true">\n{per_region}\n  </Choices>\n'
        )
    template = TEMPLATE_PATH.read_text()
    return template.format(
        ts=TS_NAME,
        time=TIME_COLUMN,
        region=REGION_NAME,
        window=WINDOW_NAME,
        labels=labels,
        channels=channels,
        choices=choices,
        attribution=attribution,
    )


def config_channels(label_config: str) -> list[str] | None:
    """Channel legends of a labeling config, in order (None when it is not XML): to explain a mismatch."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError:
        return None
    return [channel.get("legend") or channel.get("column") or "?" for channel in root.iter("Channel")]


def region_result(start_seconds: float, end_seconds: float, label: str, region_id: str) -> dict:
    """One TimeSeriesLabels region (times in the task's time-column units: seconds from recording start)."""
    return {
        "id": region_id,
        "from_name": REGION_NAME,
        "to_name": TS_NAME,
        "type": "timeserieslabels",
        "value": {
            "start": round(float(start_seconds), 4),
            "end": round(float(end_seconds), 4),
            "instant": False,
            "timeserieslabels": [label],
        },
    }


def channels_result(channel_names: list[str], region_id: str) -> dict:
    """Per-region channel attribution (which channels show the event)."""
    return {
        "id": region_id,
        "from_name": CHANNELS_NAME,
        "to_name": TS_NAME,
        "type": "choices",
        "value": {"choices": list(channel_names)},
    }


def window_result(choice: str) -> dict:
    """The window-level answer (Spike / No spike / Unsure)."""
    if choice not in WINDOW_CHOICES:
        raise ValueError(f"window choice must be one of {', '.join(WINDOW_CHOICES)}, got {choice!r}")
    return {"from_name": WINDOW_NAME, "to_name": TS_NAME, "type": "choices", "value": {"choices": [choice]}}
