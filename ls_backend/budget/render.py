"""The status in words: the key numbers, the command's table, and the summary in Label Studio's description."""

from __future__ import annotations

import math

from .curve import Assessment, assess
from .status import BudgetStatus

DESCRIPTION_MARK = "--- label budget (spike-al, refreshed after each retraining) ---"
FAILURE_MARK = "MODEL NOT UPDATED. "


def assessment_of(status: BudgetStatus) -> Assessment:
    points = status.quality
    per_window = status.spent / status.labeled_windows if status.labeled_windows else 1.0
    return assess([p["labels"] for p in points], [p["score"] for p in points], status.target_score,
                  status.labeled_windows, per_window)  # fmt: skip


def duration(seconds: float) -> str:
    """``3725`` -> ``"1 h 02 min"``; ``95`` -> ``"1 min 35 s"``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def estimate_text(assessment: Assessment) -> str:
    needed = assessment.labels_to_target
    if needed is None:
        return "not enough retrainings yet"
    if not math.isfinite(needed):
        return "not reachable at the current rate"
    text = f"about {math.ceil(needed)} more labels"
    if assessment.labels_to_target_range is not None:
        low, high = assessment.labels_to_target_range
        high_text = "unbounded" if not math.isfinite(high) else str(math.ceil(high))
        text += f" (range {math.ceil(low)} to {high_text})"
    return text


def key_numbers(status: BudgetStatus, assessment: Assessment) -> list[tuple[str, str]]:
    """(what, value) rows shared by the table, the page and the description."""
    budget = "no budget set" if status.budget is None else f"{status.budget} labels"
    remaining = "-" if status.remaining is None else f"{status.remaining} labels"
    per_label = duration(status.seconds / status.spent) if status.spent else "-"
    quality = "-" if assessment.latest_score is None else f"{assessment.latest_score:.2f}"
    reviews = []
    if status.cluster_reviews:
        reviews = [("Cluster reviews", f"{status.cluster_reviews} decisions, {status.review_labeled_windows} "
                    "detections labeled by them (weight 0.5; not counted as labels spent)")]  # fmt: skip
    return [
        ("Budget", budget),
        ("Labels spent", f"{status.spent}" + (" (budget spent)" if status.is_spent else "")),
        ("Labels remaining", remaining),
        ("Clinician time", f"{duration(status.seconds)} ({per_label} per label)"),
        ("Windows labeled", str(status.labeled_windows)),
        ("Labels from context", f"{status.context_windows} windows (spikes drawn in other tasks' context, free)"),
        *reviews,
        ("Spike windows found", str(status.spike_windows)),
        ("Model quality (AUPRC, 0-1)", f"{quality} (target {status.target_score:.2f})"),
        ("Labels to reach the target", estimate_text(assessment)),
    ]


def what_labels_bought(status: BudgetStatus, assessment: Assessment) -> str:
    quality = (
        "no validated model yet"
        if assessment.latest_score is None
        else (f"a model of quality {assessment.latest_score:.2f}")
    )
    context = f" ({status.context_windows} of them from context)" if status.context_windows else ""
    return (
        f"{status.spent} labels ({duration(status.seconds)} of clinician time) bought {status.spike_windows} spike "
        f"windows found among {status.labeled_windows} windows labeled{context}, and {quality}."
    )


def verdict(status: BudgetStatus, assessment: Assessment) -> str:
    """The recommendation: what to do with the project, then any clinician past their own budget."""
    return " ".join(filter(None, [_project_verdict(status, assessment), _clinicians_over(status)]))


def _project_verdict(status: BudgetStatus, assessment: Assessment) -> str:
    if status.is_spent:
        return (
            f"Budget spent ({status.spent} of {status.budget} labels): stop labeling this patient; the backend no "
            f"longer asks for labels. {what_labels_bought(status, assessment)}"
        )
    needed, curve = assessment.labels_to_target, assessment.curve
    if (
        status.budget is None
        or status.remaining is None
        or needed is None
        or curve is None
        or needed <= status.remaining
        or assessment.target_reached
    ):
        return assessment.advice
    at_budget = curve.score(status.budget * status.labeled_windows / status.spent)
    return (
        f"{assessment.advice} The budget has {status.remaining} labels left: at {status.budget} labels the curve "
        f"predicts quality {at_budget:.2f}; raise the budget to reach {status.target_score:.2f}."
    )


def _clinicians_over(status: BudgetStatus) -> str:
    over = [f"{c.name} ({c.labels} of {c.budget})" for c in status.clinicians if c.budget and c.labels >= c.budget]
    return f"Own budget spent: {', '.join(over)}." if over else ""


def text_table(status: BudgetStatus) -> str:
    """The command line report."""
    assessment = assessment_of(status)
    width = max(len(k) for k, _ in key_numbers(status, assessment))
    lines = [f"Label budget of project {status.project} ({status.title})", ""]
    lines += [f"  {what:<{width}}  {value}" for what, value in key_numbers(status, assessment)]
    lines += ["", "  Clinician                       labels   budget   time"]
    for c in status.clinicians:
        limit = "-" if c.budget is None else str(c.budget)
        lines.append(f"  {c.name:<30} {c.labels:>7} {limit:>8}   {duration(c.seconds)}")
    lines += ["", "  Quality after each retraining (windows labeled -> AUPRC on held-back or cross-validated labels):"]
    lines += [_quality_line(q) for q in status.quality] or [
        "    none yet (a model is scored once 2 spikes and 2 non-spikes are labeled)"
    ]
    lines += ["", f"  {verdict(status, assessment)}"]
    return "\n".join(lines)


def description_summary(status: BudgetStatus) -> str:
    """The short block written into the Label Studio project's description."""
    assessment = assessment_of(status)
    numbers = dict(key_numbers(status, assessment))
    head = "BUDGET SPENT. " if status.is_spent else ""
    return (
        f"{head}Labels: {numbers['Labels spent']} of {numbers['Budget']}, {numbers['Labels remaining']} left. "
        f"Clinician time: {numbers['Clinician time']}. Spike windows found: {status.spike_windows}. "
        f"Model quality: {numbers['Model quality (AUPRC, 0-1)']}. {verdict(status, assessment)} "
        f"Full report: /report/{status.project} on the ML backend."
    )


def with_summary(description: str | None, summary: str) -> str:
    """The description with its budget block replaced (the manager's own text above it is kept)."""
    own = (description or "").split(DESCRIPTION_MARK, 1)[0].rstrip()
    return f"{own}\n\n{DESCRIPTION_MARK}\n{summary}".lstrip()


def with_failure(description: str | None, line: str | None) -> str:
    """The description with the failure notice at the top of its budget block set to ``line`` (None: removed)."""
    own, _, block = (description or "").partition(DESCRIPTION_MARK)
    kept = [text for text in block.strip().splitlines() if not text.startswith(FAILURE_MARK)]
    lines = ([f"{FAILURE_MARK}{line}"] if line else []) + kept
    return f"{own.rstrip()}\n\n{DESCRIPTION_MARK}\n" + "\n".join(lines) if lines else own.rstrip()


def _quality_line(point: dict) -> str:
    how = f"{point['n_validation']} {point.get('method', 'held back')}"
    return f"    {point['labels']:>6} -> {point['score']:.3f}  ({point['version']}, {how})"
