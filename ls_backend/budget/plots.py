"""The report's figure: quality against labels spent (with the fitted curve), labels per clinician, what was found."""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.figure import Figure

from .curve import Assessment
from .status import BudgetStatus

SPIKE_COLOR, QUIET_COLOR, CURVE_COLOR = "#c0392b", "#2e86c1", "#555555"


def report_figure(status: BudgetStatus, assessment: Assessment) -> Figure:
    figure = Figure(figsize=(13, 4), layout="constrained")
    quality, clinicians, found = figure.subplots(1, 3, width_ratios=[1.6, 1, 1])
    _quality_panel(quality, status, assessment)
    _clinician_panel(clinicians, status)
    _found_panel(found, status)
    return figure


def png_bytes(status: BudgetStatus, assessment: Assessment, dpi: int = 90) -> bytes:
    buffer = io.BytesIO()
    report_figure(status, assessment).savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _quality_panel(ax, status: BudgetStatus, assessment: Assessment) -> None:
    ax.set_title("Model quality as windows are labeled")
    ax.set_xlabel("windows labeled")
    ax.set_ylabel("quality (AUPRC on held-back labels)")
    ax.set_ylim(0, 1.02)
    ax.axhline(status.target_score, color="green", ls="--", lw=1, label=f"target {status.target_score:.2f}")
    per_window = status.spent / status.labeled_windows if status.labeled_windows else 1.0
    budget_windows = None if status.budget is None else status.budget / per_window
    if budget_windows is not None:
        ax.axvline(budget_windows, color="black", ls=":", lw=1, label=f"budget ({status.budget} labels)")
    labels = [p["labels"] for p in status.quality]
    if labels:
        ax.plot(labels, [p["score"] for p in status.quality], "o", color=SPIKE_COLOR, label="after a retraining")
    if assessment.curve is not None:
        right = max([status.labeled_windows, budget_windows or 0, *labels]) * 1.3 + 10
        if assessment.labels_to_target is not None and math.isfinite(assessment.labels_to_target):
            right = max(right, (status.spent + assessment.labels_to_target) / per_window * 1.1)
        grid = np.linspace(1, right, 200)
        ax.plot(grid, assessment.curve.score(grid), color=CURVE_COLOR, lw=1, label="fitted learning curve")
    if not labels:
        ax.text(0.5, 0.5, "no validated model yet", transform=ax.transAxes, ha="center", color=CURVE_COLOR)
    ax.set_xlim(left=0)
    ax.legend(loc="lower right", fontsize=8)


def _clinician_panel(ax, status: BudgetStatus) -> None:
    ax.set_title("Labels per clinician")
    names = [c.name for c in status.clinicians]
    ax.barh(names, [c.labels for c in status.clinicians], color=QUIET_COLOR)
    for row, c in enumerate(status.clinicians):
        if c.budget is not None:
            ax.plot([c.budget, c.budget], [row - 0.4, row + 0.4], color="black", lw=2)
    ax.set_xlabel("labels (black bar: the clinician's budget)")
    ax.invert_yaxis()


def _found_panel(ax, status: BudgetStatus) -> None:
    ax.set_title("What the labeled windows held")
    counts = [status.spike_windows, status.no_spike_windows]
    bars = ax.bar(["spike", "no spike"], counts, color=[SPIKE_COLOR, QUIET_COLOR])
    ax.set_xlabel('answers averaged per window ("Unsure" = half a spike): half or more is a spike', fontsize=8)
    ax.bar_label(bars)
    ax.set_ylabel("windows")
    ax.yaxis.get_major_locator().set_params(integer=True)
