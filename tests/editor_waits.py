"""Waits on what Label Studio's labeling editor has drawn, instead of fixed sleeps (browser tests, Playwright pages).

Check ``page.console_errors`` after :func:`wait_for_traces`: the editor reports its errors while it draws, so a
check after a fixed sleep passes when the drawing (and its error) comes late.
"""

from __future__ import annotations

from typing import Any

import pytest

# True once at least n channel plots exist and each has drawn its trace (an SVG path with line segments).
_TRACES_DRAWN = """n => {
  const plots = [...document.querySelectorAll('.htx-timeseries-channel')];
  const drawn = plot => [...plot.querySelectorAll('svg path')].some(p => (p.getAttribute('d') || '').includes('L'));
  return plots.length >= n && plots.every(drawn);
}"""

# The id of the task open in the editor (bottom left) once it differs from the given one, else null.
_NEW_TASK_ID = """previous => {
  const element = document.querySelector('.lsf-current-task__task-id');
  const match = element && element.innerText.match(/^\\s*#?(\\d+)/);
  return match && Number(match[1]) !== previous ? Number(match[1]) : null;
}"""


SETTLE_MS = 500  # the traces must still be there this long after they were drawn
SETTLE_TRIES = 5


def wait_for_traces(page: Any, n_channels: int, timeout_ms: float = 60_000) -> None:
    """Wait until the editor has drawn the trace of each of (at least) ``n_channels`` channels, and they stay drawn;
    fail with the page's console errors (the usual cause) otherwise.

    The Data Manager may open a task twice (once more when it adds the tab to the URL): the first drawing can vanish
    right after it appeared, so the traces count once they are still there ``SETTLE_MS`` later."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(SETTLE_TRIES):
        try:
            page.wait_for_function(_TRACES_DRAWN, arg=n_channels, timeout=timeout_ms)
        except PlaywrightTimeout:
            pytest.fail(f"the editor did not draw {n_channels} channel traces at {page.url}; "
                        f"console errors: {page.console_errors}")  # fmt: skip
        page.wait_for_timeout(SETTLE_MS)
        if page.evaluate(_TRACES_DRAWN, n_channels):
            return
    pytest.fail(f"the editor's {n_channels} channel traces kept vanishing at {page.url}")


def wait_for_new_task(page: Any, previous: int | None = None, timeout_ms: float = 60_000) -> int:
    """The id of the task open in the labeling editor, once it differs from ``previous``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return int(page.wait_for_function(_NEW_TASK_ID, arg=previous, timeout=timeout_ms).json_value())
    except PlaywrightTimeout:
        pytest.fail(f"no new task opened in the editor at {page.url}; console errors: {page.console_errors}")


# Per channel row: the plot's box, the drawn trace's y extent in plot coordinates, the legend's box and whether
# anything covers the legend's middle.
_ROWS = """() => [...document.querySelectorAll('.htx-timeseries-channel')].map(channel => {
  const plot = channel.querySelector('rect.overlay').getBoundingClientRect();
  const ys = [...channel.querySelectorAll('g[clip-path] path')].flatMap(path =>
    ((path.getAttribute('d') || '').match(/[ML][^ML]*/g) || []).map(step => +step.slice(1).split(',')[1]));
  const legend = channel.querySelector('text[font-weight=bold]');
  const box = legend.getBoundingClientRect();
  const covering = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return {plot: {x: plot.x, y: plot.y, width: plot.width, height: plot.height}, low: Math.min(...ys),
          high: Math.max(...ys), name: legend.textContent, top: box.top, bottom: box.bottom, left: box.left,
          right: box.right, readable: covering === legend || legend.contains(covering)};
})"""


def channel_rows(page: Any) -> list[dict]:
    """Each channel row of the open task, top to bottom (the calibration row last): ``plot`` (its box), ``low`` and
    ``high`` (the trace's y extent in plot coordinates), ``name``, the name's box and ``readable`` (nothing over it)."""
    return page.evaluate(_ROWS)


def assert_names_on_screen(page: Any, rows: list[dict], shot: Any) -> None:
    """Every channel name legible in the viewport without scrolling: inside it, left of its trace, nothing over it."""
    viewport = page.viewport_size
    for row in rows:
        assert row["readable"], f"{row['name']} is covered ({shot})"
        assert row["left"] >= 0 and row["right"] <= min(viewport["width"], row["plot"]["x"]), (row, shot)
        assert row["top"] >= 0 and row["bottom"] <= viewport["height"], f"{row['name']} is off screen ({shot})"
    assert page.evaluate("() => document.scrollingElement.scrollTop") == 0


# The channel checkboxes of the selected region (right of the traces): each one's channel name, hotkey, box, state.
_CHECKBOXES = """() => [...document.querySelectorAll('.page-traces .lsf-choice__checkbox')].map(label => {
  const hint = label.querySelector('sup');
  const input = label.querySelector('input');
  const box = input.getBoundingClientRect();
  return {name: label.textContent.replace(hint ? hint.textContent : '', '').trim(),
          hotkey: hint ? hint.textContent.replace(/[\\[\\]]/g, '').trim() : null, x: box.x, y: box.y,
          width: box.width, height: box.height, checked: input.checked};
})"""


def channel_checkboxes(page: Any) -> list[dict]:
    """The selected region's channel checkboxes, in order: ``name`` (without its hotkey hint), ``hotkey`` (the key
    Label Studio gave it, or None), its box and ``checked``."""
    return page.evaluate(_CHECKBOXES)


# The traces' scroll box (beyond 40 channels) and the scroll positions of the page around it.
_TRACE_BOX = """() => {
  const box = document.querySelector('.page-traces');
  const rect = box.getBoundingClientRect();
  return {top: rect.top, bottom: rect.bottom, scroll_top: box.scrollTop,
          max_scroll: box.scrollHeight - box.clientHeight, page_scroll_top: document.scrollingElement.scrollTop,
          editor_scroll_top: document.querySelector('.lsf-main-content').scrollTop};
}"""

# Per channel row (the calibration row last): its scroll-snap-align and the title written above it (::before).
_SNAP_POINTS = """() => [...document.querySelectorAll('.htx-timeseries-channel')].map(channel => ({
  align: getComputedStyle(channel).scrollSnapAlign, title: getComputedStyle(channel, '::before').content}))"""

# The traces' scroll position once it has left ``previous`` and rests on one of ``stops``, else null.
_SCROLL_STOP = """([previous, stops]) => {
  const top = Math.round(document.querySelector('.page-traces').scrollTop);
  return top !== previous && stops.includes(top) ? top : null;
}"""


def trace_box(page: Any) -> dict:
    """The traces' box: ``top`` and ``bottom`` (viewport), ``scroll_top`` and ``max_scroll``; and the scroll
    positions of the document (``page_scroll_top``) and of the editor (``editor_scroll_top``)."""
    return page.evaluate(_TRACE_BOX)


def snap_points(page: Any) -> list[dict]:
    """Each channel row's ``align`` (its computed scroll-snap-align) and ``title`` (its ::before content)."""
    return page.evaluate(_SNAP_POINTS)


def wait_for_scroll_stop(page: Any, previous: int, stops: list[int], timeout_ms: float = 30_000) -> int:
    """The traces' scroll position once it has left ``previous`` and rests on one of ``stops`` (a snap point)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return int(page.wait_for_function(_SCROLL_STOP, arg=[previous, stops], timeout=timeout_ms).json_value())
    except PlaywrightTimeout:
        found = trace_box(page)["scroll_top"]
        pytest.fail(f"the traces did not come to rest on a snap point {stops} from {previous}: at {found}")
