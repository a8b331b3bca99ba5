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


def wait_for_traces(page: Any, n_channels: int, timeout_ms: float = 60_000) -> None:
    """Wait until the editor has drawn the trace of each of (at least) ``n_channels`` channels; fail with the page's
    console errors (the usual cause) otherwise."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(_TRACES_DRAWN, arg=n_channels, timeout=timeout_ms)
    except PlaywrightTimeout:
        pytest.fail(f"the editor did not draw {n_channels} channel traces at {page.url}; "
                    f"console errors: {page.console_errors}")  # fmt: skip


def wait_for_new_task(page: Any, previous: int | None = None, timeout_ms: float = 60_000) -> int:
    """The id of the task open in the labeling editor, once it differs from ``previous``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return int(page.wait_for_function(_NEW_TASK_ID, arg=previous, timeout=timeout_ms).json_value())
    except PlaywrightTimeout:
        pytest.fail(f"no new task opened in the editor at {page.url}; console errors: {page.console_errors}")
