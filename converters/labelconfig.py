"""Label Studio labeling configurations, generated for a patient's channel list.

The names and label values here are the vocabulary shared with the ML backend (which parses annotations and
writes pre-annotations with them): change them in this one place.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .montage import clean_name, is_scalp_electrode, parse_contact

TS_NAME = "ts"  # the <TimeSeries> tag and the task data key holding the display series
TIME_COLUMN = "time"
REGION_NAME = "region"  # <TimeSeriesLabels>: spike regions
WINDOW_NAME = "window"  # <Choices>: the window-level answer
CHANNELS_NAME = "channels"  # per-region <Choices>: which channels show the event

REGION_LABELS = {"Spike": "#d62728", "Sharp wave": "#ff7f0e", "Artifact": "#7f7f7f"}
WINDOW_CHOICES = ("Spike", "No spike", "Unsure")
EPILEPTIFORM_LABELS = ("Spike", "Sharp wave")
REGION_HOTKEYS = {"Spike": "1", "Sharp wave": "2", "Artifact": "3"}  # pick the label, then drag over the traces
WINDOW_HOTKEYS = {"Spike": "s", "No spike": "n", "Unsure": "u"}
CALIBRATION_KEY = "cal"  # the task data column of the calibration row (not a channel of the recording)

DEFAULT_GAIN_UV, DEFAULT_WINDOW_SECONDS = 100.0, 2.0  # the page of a config built without a layout
CONTEXT_SECONDS = 4.0  # shown on each side of the target window: a 2-s window sits on a 10-s page
ROWS_BUDGET_PX = 640  # the editor's room for traces in a 1600 x 1000 browser window
MIN_ROW_PX, MAX_ROW_PX = 15, 60  # below 15 px (42 channels and more) the traces scroll, by whole groups
GROUP_GAP_PX = 6
GROUP_TITLE_PX = 16  # when the traces scroll: the gap above a shaft, with its name
ROW_INDENT_PX = 48  # room for the channel names, left of the editor's own 50-px margin
CHANNEL_CHOICES_PX = 130  # right of the traces: a selected region's channel checkboxes, one beside each row
# The editor's fixed margins (its TimeSeries model): around each channel's plot, and inside it above and below the
# trace (a channel of height H draws its y range on H - 20 px).
EDITOR_MARGIN_LEFT_PX, EDITOR_MARGIN_RIGHT_PX, EDITOR_MARGIN_TOP_PX, EDITOR_MARGIN_BOTTOM_PX = 50, 20, 20, 30
EDITOR_PLOT_PAD_PX = 10
# When the traces scroll, their box is as high as a full page's rows and their top margin (the editor then fits a
# 1600 x 1000 window without scrolling).
SCROLL_BOX_PX = ROWS_BUDGET_PX + EDITOR_MARGIN_TOP_PX
TRACE_COLOR, CALIBRATION_COLOR = "#1f3b73", "#b22222"
CONTEXT_SHADE, TARGET_SHADE, TARGET_EDGE, TARGET_EDGE_PX = "#eef1f5", "#fff6d5", "#c99a06", 2

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "label_config" / "spike_timeseries.xml"


def channel_key(index: int) -> str:
    """Data key of channel ``index``: lowercase ASCII (the editor lowercases column names; capitals crash it)."""
    return f"ch{index}"


@dataclass(frozen=True)
class PageLayout:
    """What a task shows: a page of ``context_seconds`` on each side of the target window, at one amplitude scale.

    Every channel row spans ``-gain_uv`` to ``+gain_uv`` (traces beyond are clipped flat at the row's edge, never
    rescaled). The target always sits at the same place on the page (pages at a recording's edges are padded), so
    the labeling config marks it once for every task.
    """

    gain_uv: float
    window_seconds: float
    context_seconds: float = CONTEXT_SECONDS

    def __post_init__(self) -> None:
        if not self.gain_uv > 0:
            raise ValueError(f"gain_uv must be positive, got {self.gain_uv}")
        if not self.window_seconds > 0 or self.context_seconds < 0:
            raise ValueError(
                f"a page needs window_seconds > 0 and context_seconds >= 0, got {self.window_seconds} "
                f"and {self.context_seconds}"
            )

    @property
    def page_seconds(self) -> float:
        return self.window_seconds + 2 * self.context_seconds

    @property
    def target_fractions(self) -> tuple[float, float]:
        """Where the target window starts and ends, as fractions of the page width."""
        return self.context_seconds / self.page_seconds, (
            self.context_seconds + self.window_seconds
        ) / self.page_seconds


def nice_gain_uv(amplitude_uv: float) -> float:
    """The smallest usual EEG gain (10, 15, 20, 25, 30, 40, 50, 75 x 10^k uV) of at least ``amplitude_uv``."""
    if not amplitude_uv > 0:
        raise ValueError(f"an amplitude scale needs a positive amplitude, got {amplitude_uv}")
    decade = 10.0 ** np.floor(np.log10(amplitude_uv / 10.0))
    return next(float(step * decade) for step in (10, 15, 20, 25, 30, 40, 50, 75, 100) if step * decade >= amplitude_uv)


def channel_groups(ch_names: list[str]) -> list[int]:
    """The index of each channel's group: a bipolar chain (``A1-A2, A2-A3``; ``Fp1-F7, F7-T3``), a shaft, or the
    scalp electrodes of a referential montage (``EEG Fp1-Ref, EEG Fp2-Ref``)."""
    groups: list[int] = []
    for i, name in enumerate(ch_names):
        same = i > 0 and _links(clean_name(ch_names[i - 1]), clean_name(name))
        groups.append(groups[-1] if same else (groups[-1] + 1 if groups else 0))
    return groups


def page_groups(ch_names: list[str]) -> list[int]:
    """The groups set apart on the page: :func:`channel_groups`, or a single group when their gaps would push a page
    that fits without them (up to 41 channels) into scrolling."""
    groups = channel_groups(ch_names)
    rows_px = MIN_ROW_PX * (len(ch_names) + 1)
    if rows_px <= ROWS_BUDGET_PX < rows_px + GROUP_GAP_PX * groups[-1]:
        return [0] * len(ch_names)
    return groups


def _links(previous: str, name: str) -> bool:
    """Whether ``name`` continues ``previous``'s chain (bipolar), shaft or scalp montage (referential)."""
    if "-" in previous and "-" in name:
        return previous.split("-", 1)[1] == name.split("-", 1)[0]
    if is_scalp_electrode(previous) and is_scalp_electrode(name):
        return True
    before, after = parse_contact(previous), parse_contact(name)
    return before is not None and after is not None and before.shaft == after.shaft


def row_height_px(n_chans: int, n_groups: int = 1) -> int:
    """Height of one channel row, so that every row (and the calibration row) fits the editor without scrolling."""
    free = ROWS_BUDGET_PX - GROUP_GAP_PX * max(0, n_groups - 1)
    return int(max(MIN_ROW_PX, min(MAX_ROW_PX, free // (n_chans + 1))))


@dataclass(frozen=True)
class RowLayout:
    """How the channel rows stand on the page.

    Up to 41 channels (and the calibration row) every row fits the editor at once (rows of 15 to 60 px, groups
    apart by a small gap). From 42 channels on, rows stay 15 px and the traces scroll in a box of their own
    (``SCROLL_BOX_PX`` high, the checkbox column inside it) by whole groups: each group's first row is a scroll snap
    point, so a shaft is never cut at the top, its name stands in the gap above it, and the calibration row with the
    time axis stays at the box's bottom. Channel rows are not split into tasks per shaft: labels stay one per window.
    """

    groups: tuple[int, ...]  # each channel's group on the page
    titles: tuple[str, ...]  # each group's title (its shaft) when the traces scroll, else ""
    row_px: int
    scrolls: bool

    @property
    def starts(self) -> list[int]:
        """The first channel of each group after the first."""
        return [i for i in range(1, len(self.groups)) if self.groups[i] != self.groups[i - 1]]

    def gap_px(self, group: int) -> int:
        """The room above ``group`` (not the first): its title's when the traces scroll, else a small gap."""
        return GROUP_TITLE_PX if self.titles[group] else GROUP_GAP_PX

    def group_heights_px(self) -> list[int]:
        """Each group's height in the scroll box, from its snap point (the top of its gap, the box's top for the
        first group) to its last row's end."""
        sizes = np.bincount(self.groups)
        above = [EDITOR_MARGIN_TOP_PX + EDITOR_PLOT_PAD_PX] + [self.gap_px(g) for g in range(1, len(sizes))]
        return [int(gap + size * self.row_px) for gap, size in zip(above, sizes, strict=True)]

    def group_tops_px(self) -> list[int]:
        """Each group's snap point: its offset from the top of the traces."""
        return [0, *np.cumsum(self.group_heights_px()[:-1]).tolist()]

    @property
    def calibration_px(self) -> int:
        """The calibration row and the time axis under it, below the last group's rows (and their gap)."""
        return self.row_px + EDITOR_PLOT_PAD_PX + EDITOR_MARGIN_BOTTOM_PX

    def calibration_gap_px(self) -> int:
        """The room above the calibration row. When the traces scroll, enough to let the box scroll as far as the
        first group from which every group fits in it, so the last position is a group start too."""
        if self.scrolls:
            tails = np.cumsum(self.group_heights_px()[::-1]) + self.calibration_px
            fitting = tails[tails + GROUP_GAP_PX <= SCROLL_BOX_PX]
            if len(fitting):
                return int(SCROLL_BOX_PX - fitting[-1])
        return GROUP_GAP_PX


def row_layout(ch_names: list[str]) -> RowLayout:
    """The rows of a page of these channels: grouped by :func:`page_groups`, scrolling when 16-px rows do not fit
    (40 channels and more)."""
    if not ch_names:
        raise ValueError("a page needs at least one channel")
    groups = page_groups(ch_names)
    n_groups = groups[-1] + 1
    scrolls = MIN_ROW_PX * (len(ch_names) + 1) + GROUP_GAP_PX * (n_groups - 1) > ROWS_BUDGET_PX
    members: list[list[str]] = [[] for _ in range(n_groups)]
    for name, group in zip(ch_names, groups, strict=True):
        members[group].append(name)
    titles = tuple(shaft_of(names) if scrolls else "" for names in members)
    return RowLayout(tuple(groups), titles, row_height_px(len(ch_names), n_groups), scrolls)


def shaft_of(ch_names: list[str]) -> str:
    """The shaft every electrode of these channels is on (``B'`` for ``B'1-B'2, B'2-B'3``), as written; "" when
    they are on several (a scalp chain ``Fp1-F7, F7-T3``) or not on a shaft."""
    electrodes = [part for name in ch_names for part in clean_name(name).split("-")]
    contacts = [parse_contact(electrode) for electrode in electrodes]
    if any(c is None for c in contacts):
        return ""
    shafts = {c.shaft for c in contacts if c is not None}
    return electrodes[0][: len(shafts.pop())] if len(shafts) == 1 else ""


def make_label_config(
    ch_names: list[str],
    layout: PageLayout | None = None,
    channel_attribution: bool = True,
    display_by_url: bool = False,
) -> str:
    """The labeling configuration for pages of ``layout`` (default: ``DEFAULT_GAIN_UV``, 2-s windows) with these
    channels (real names shown beside the traces); ``display_by_url``: the tasks' series are URLs of the backend
    (:mod:`converters.display`), else inline.

    One ``<Channel>`` per channel on the layout's common y range, a calibration row (a pulse of ``gain_uv``) as the
    amplitude reference, and a style sheet that stacks the rows without the editor's margins, writes the channel
    names beside the traces, shades the target window and separates the channel groups.
    """
    if not ch_names:
        raise ValueError("a label config needs at least one channel")
    layout = layout or PageLayout(DEFAULT_GAIN_UV, DEFAULT_WINDOW_SECONDS)
    page_rows = row_layout(ch_names)
    row_px = page_rows.row_px
    height = row_px + 2 * EDITOR_PLOT_PAD_PX  # the plot: the row and the editor's padding, which rows overlap
    y_range = f"{-layout.gain_uv:g},{layout.gain_uv:g}"
    rows = [
        f'      <Channel column="{channel_key(i)}" legend={quoteattr(name)} units="uV" displayFormat=",.1f" '
        f'height="{height}" strokeColor="{TRACE_COLOR}" dataRange="{y_range}" showAxis="false"/>'
        for i, name in enumerate(ch_names)
    ]
    rows.append(  # the amplitude reference, and the one time axis of the page
        f'      <Channel column="{CALIBRATION_KEY}" legend={quoteattr(calibration_legend(layout))} units="uV" '
        f'displayFormat=",.1f" height="{height}" strokeColor="{CALIBRATION_COLOR}" strokeWidth="2" '
        f'dataRange="{y_range}" showAxis="true" showYAxis="false"/>'
    )
    labels = "\n".join(
        f"    <Label value={quoteattr(value)} background={quoteattr(color)} hotkey={quoteattr(key)}/>"
        for (value, color), key in zip(REGION_LABELS.items(), REGION_HOTKEYS.values(), strict=True)
    )
    choices = "\n".join(
        f"    <Choice value={quoteattr(value)} hotkey={quoteattr(WINDOW_HOTKEYS[value])}/>" for value in WINDOW_CHOICES
    )
    attribution = ""
    if channel_attribution:
        per_region = "\n".join(f"    <Choice {_choice_attributes(name)}/>" for name in ch_names)
        attribution = (
            f'  <Choices name="{CHANNELS_NAME}" toName="{TS_NAME}" perRegion="true" choice="multiple" '
            f'showInline="true">\n{per_region}\n  </Choices>\n'
        )
    return TEMPLATE_PATH.read_text().format(
        style=page_style(layout, page_rows),
        legend=escape(page_legend(layout), {'"': "&quot;"}),
        ts=TS_NAME,
        value_type="url" if display_by_url else "json",
        time=TIME_COLUMN,
        region=REGION_NAME,
        window=WINDOW_NAME,
        labels=labels,
        channels="\n".join(rows),
        choices=choices,
        attribution=attribution,
    )


def calibration_legend(layout: PageLayout) -> str:
    return f"{layout.gain_uv:g} uV"


def page_legend(layout: PageLayout) -> str:
    """The line under the title: the amplitude scale, where the target is, and the keys."""
    region_keys = ", ".join(f"{key} {label}" for label, key in REGION_HOTKEYS.items())
    window_keys = ", ".join(f"{key} {choice}" for choice, key in WINDOW_HOTKEYS.items())
    return (
        f"Each row \u00b1{layout.gain_uv:g} uV, clipped beyond (bottom: a {layout.gain_uv:g}-uV pulse). "
        f"Label the shaded {layout.window_seconds:g}-s window; the rest is context. "
        f"Keys: {window_keys}; regions {region_keys}."
    )


def page_style(layout: PageLayout, rows: RowLayout) -> str:
    """CSS for the editor: rows stacked without margins, names beside the traces, the target shaded, groups apart.

    The editor draws each channel as an SVG with fixed margins around its plot and pads the plot above and below
    the trace; the rows overlap all of them, so that row k's y range (``row_px`` high) ends where row k+1's begins,
    and each plot is clipped to its row.
    """
    overlap = EDITOR_MARGIN_TOP_PX + EDITOR_MARGIN_BOTTOM_PX + 2 * EDITOR_PLOT_PAD_PX
    row_px = rows.row_px
    gaps = {i + 1: rows.gap_px(rows.groups[i]) for i in rows.starts}  # nth-child is 1-based
    rules = [
        f".htx-timeseries .lsf-object {{ padding-left: {ROW_INDENT_PX}px; "
        f"background: linear-gradient(to right, {_shading(layout, ROW_INDENT_PX)}); }}",
        f".htx-timeseries-channel svg {{ margin-bottom: -{overlap}px; overflow: visible; pointer-events: none; }}",
        ".htx-timeseries-channel:nth-last-child(2) svg { margin-bottom: 0; }",  # the last row (the overview follows)
        f".htx-timeseries-channel clipPath rect {{ y: {EDITOR_PLOT_PAD_PX}px; height: {row_px}px; }}",
        ".htx-timeseries-channel svg g { pointer-events: auto; }",
        ".htx-timeseries-overview { display: none; }",
        ".htx-timeseries-channel svg g[text-anchor=start] { display: none; }",  # the cursor's value on every row
        ".page-legend h6, .page-legend .ant-typography { font-size: 13px; font-weight: 400; margin: 0; }",
        ".htx-timeseries-channel svg text[font-weight=bold] { opacity: 1; font-size: 12px; font-weight: 600; "
        f"fill: #111; text-anchor: end; transform: translate(-16px, {row_px // 2 + 2}px); }}",
        *(f".htx-timeseries-channel:nth-child({n}) svg {{ margin-top: {px}px; }}" for n, px in gaps.items()),
        f".htx-timeseries-channel:nth-last-child(2) svg {{ margin-top: {rows.calibration_gap_px()}px; }}",
        *_channel_choices_style(gaps, row_px),
        *(_scrolling_style(layout, rows) if rows.scrolls else []),
    ]
    return "\n".join(f"    {rule}" for rule in rules)


def _shading(layout: PageLayout, indent_px: int) -> str:
    """The color stops, left to right, that shade the context grey and the target window yellow between amber
    edges, under a plot whose box starts ``indent_px`` right of the shaded element's left edge."""
    left, right = indent_px + EDITOR_MARGIN_LEFT_PX, EDITOR_MARGIN_RIGHT_PX

    def at(fraction: float, shift_px: int = 0) -> str:
        return f"calc({left + shift_px}px + {fraction:.6f} * (100% - {left + right}px))"

    start, end = layout.target_fractions
    return ", ".join(
        [
            f"transparent {left}px",
            f"{CONTEXT_SHADE} {left}px",
            f"{CONTEXT_SHADE} {at(start)}",
            f"{TARGET_EDGE} {at(start)}",
            f"{TARGET_EDGE} {at(start, TARGET_EDGE_PX)}",
            f"{TARGET_SHADE} {at(start, TARGET_EDGE_PX)}",
            f"{TARGET_SHADE} {at(end, -TARGET_EDGE_PX)}",
            f"{TARGET_EDGE} {at(end, -TARGET_EDGE_PX)}",
            f"{TARGET_EDGE} {at(end)}",
            f"{CONTEXT_SHADE} {at(end)}",
            f"{CONTEXT_SHADE} calc(100% - {right}px)",
            f"transparent calc(100% - {right}px)",
        ]
    )


def _scrolling_style(layout: PageLayout, rows: RowLayout) -> list[str]:
    """From 40 channels on: the traces and their checkbox column scroll in one box, snapping to group starts (a
    group's title at the box's top), each group titled in the gap above it, the calibration row and time axis
    held at the box's bottom over the rows scrolled under it.

    The rows stay unpositioned (a positioned row would catch the pointer over the rows it overlaps): the titles are
    placed in the traces' block at the offsets of the layout.
    """
    above_row = EDITOR_MARGIN_TOP_PX + EDITOR_PLOT_PAD_PX  # a row's SVG starts this far above its trace
    channel = ".htx-timeseries-channel"
    rules = [
        f".page-traces {{ max-height: {SCROLL_BOX_PX}px; overflow-y: auto; scroll-snap-type: y mandatory; "
        "overscroll-behavior: contain; }",
        ".page-traces .lsf-object { position: relative; }",
    ]
    tops = rows.group_tops_px()
    for group, first in enumerate([0, *rows.starts]):
        gap = above_row if group == 0 else rows.gap_px(group)
        rules.append(
            f"{channel}:nth-child({first + 1}) {{ scroll-snap-align: start; scroll-margin-top: {gap - above_row}px; }}"
        )
        if rows.titles[group]:
            rules.append(
                f'{channel}:nth-child({first + 1})::before {{ content: "{_css_text(rows.titles[group])}"; '
                f"position: absolute; left: 0; right: 0; top: {tops[group] + gap - GROUP_TITLE_PX}px; "
                f"height: {GROUP_TITLE_PX - 1}px; padding-left: 4px; border-top: 1px solid #9aa4b5; "
                f"font-size: 12px; font-weight: 700; line-height: {GROUP_TITLE_PX - 1}px; color: #111; "
                "pointer-events: none; }"
            )
    covered_from = above_row - GROUP_GAP_PX  # the calibration row hides what scrolls under it
    calibration = f"{channel}:nth-last-child(2)"
    rules += [
        f"{calibration} {{ position: sticky; bottom: 0; z-index: 1; pointer-events: none; "
        f"background: linear-gradient(to right, {_shading(layout, 0)}) 0 {covered_from}px / 100% 100% no-repeat, "
        f"linear-gradient(#fff, #fff) 0 {covered_from}px / 100% 100% no-repeat; }}",
        f'{calibration}::after {{ content: ""; position: absolute; z-index: -1; left: -{ROW_INDENT_PX}px; '
        f"width: {ROW_INDENT_PX}px; top: {covered_from}px; bottom: 0; background: #fff; }}",  # under the names
        f'{calibration}::before {{ content: ""; position: absolute; z-index: -1; right: -{CHANNEL_CHOICES_PX}px; '
        f"width: {CHANNEL_CHOICES_PX}px; top: {covered_from}px; bottom: 0; background: #fff; }}",  # the checkboxes
    ]
    return rules


def _css_text(text: str) -> str:
    """``text`` for a CSS string in an XML style sheet: every character but letters, digits and ``'`` escaped."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "'") else f"\\{ord(c):x} " for c in text)


FULLWIDTH_DOLLAR = "\uff04"


def _choice_attributes(name: str) -> str:
    """A channel's ``<Choice>`` attributes. Label Studio reads ``$x`` in a value as the task's field ``x`` (Nihon
    Kohden's ``POL $A1`` would show "POL undefined"): such a name is shown with a full-width dollar sign and kept,
    as the alias, in annotations and pre-annotations."""
    if "$" not in name:
        return f"value={quoteattr(name)}"
    shown = name.replace("$", FULLWIDTH_DOLLAR)
    return f"value={quoteattr(shown)} alias={quoteattr(name)}"


def _channel_choices_style(gaps: dict[int, int], row_px: int) -> list[str]:
    """A selected region's channel checkboxes in a column right of the traces, each beside its channel's row: below
    the traces they would push a full page into scrolling."""
    choice = ".page-traces .lsf-choice"
    return [
        f".page-traces {{ position: relative; padding-right: {CHANNEL_CHOICES_PX}px; }}",
        f".page-traces .lsf-choices {{ position: absolute; right: 0; width: {CHANNEL_CHOICES_PX}px; "
        f"top: {EDITOR_MARGIN_TOP_PX + EDITOR_PLOT_PAD_PX}px; margin: 0; display: block; }}",
        f"{choice}, {choice}__item, {choice}__checkbox {{ display: flex; align-items: center; height: {row_px}px; "
        "min-height: 0; margin: 0; padding: 0; font-size: 11px; line-height: 1; white-space: nowrap; }",
        *(f"{choice}:nth-child({n}) {{ margin-top: {px}px; }}" for n, px in gaps.items()),
    ]


def config_channels(label_config: str) -> list[str] | None:
    """Channel legends of a labeling config, in order (None when it is not XML): to explain a mismatch."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError:
        return None
    return [
        channel.get("legend") or channel.get("column") or "?"
        for channel in root.iter("Channel")
        if channel.get("column") != CALIBRATION_KEY
    ]


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
