"""``/report/<project>``: the budget report as one self-contained HTML page (the figure inlined as a PNG).

The page reads only ``MODEL_DIR/<project>/`` files for a validated project id (digits), so nothing from the request
reaches the file system unchecked. It sits behind the backend's basic auth like every other endpoint.
"""

from __future__ import annotations

import base64
import datetime
from html import escape

from flask import Flask, Response

from ..config import Settings
from ..failures import load_failure
from ..project_state import project_key
from .plan import load_budget
from .plots import png_bytes
from .render import assessment_of, key_numbers, verdict, what_labels_bought
from .status import BudgetStatus, load_status

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } .verdict { font-size: 1.2em; padding: .8em 1em; border-radius: 6px; background: #eef5ee; }
.verdict.spent { background: #fbeaea; } table { border-collapse: collapse; margin: 1em 0; }
td, th { padding: .3em 1em; border-bottom: 1px solid #ddd; text-align: left; } td.n { text-align: right; }
img { max-width: 100%; } .note { color: #666; font-size: .9em; }
"""


def register_report_page(app: Flask, settings: Settings) -> None:
    """Add the ``/report/<project>`` route to the backend's app."""

    @app.get("/report/<project>")
    def report(project: str) -> Response:
        return report_response(settings, project)


def report_response(settings: Settings, project: str) -> Response:
    try:
        key = project_key(project)
    except ValueError:
        return message_page(400, "Not a project", f"“{project}” is not a Label Studio project id (a number).")
    if not (settings.model_dir / key).is_dir():
        return message_page(
            404,
            "Unknown project",
            f"This backend has never seen project {key}: connect the ML backend to the project in Label Studio first.",
        )
    failure = load_failure(settings.model_dir / key)
    notice = "" if failure is None else f"<p class='verdict spent' id='failure'>{escape(failure.line())}</p>"
    status = load_status(settings.model_dir, key)
    if status is None or status.spent == 0:
        budget = load_budget(settings, key).labels
        budget_text = "no budget is set" if budget is None else f"the budget is {budget} labels"
        return message_page(
            200,
            f"Project {key}: no labels yet",
            f"Nobody has labeled a window of this project "
            f"yet ({budget_text}). The report appears after the first labels are submitted and "
            "the model has retrained.",
            notice,
        )
    return Response(report_html(status, notice), 200, mimetype="text/html")


def report_html(status: BudgetStatus, notice: str = "") -> str:
    """The whole report page for ``status`` (``notice``: HTML shown first, e.g. a failing retraining)."""
    assessment = assessment_of(status)
    figure = base64.b64encode(png_bytes(status, assessment)).decode()
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td class='n' data-key='{escape(k)}'>{escape(v)}</td></tr>"
        for k, v in key_numbers(status, assessment)
    )
    clinicians = "".join(
        f"<tr><td>{escape(c.name)}</td><td class='n'>{c.labels}</td>"
        f"<td class='n'>{'-' if c.budget is None else c.budget}</td><td class='n'>{_minutes(c.seconds)}</td></tr>"
        for c in status.clinicians
    )
    made = datetime.datetime.fromtimestamp(status.made_at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Label budget: {escape(status.title)}</title><style>{STYLE}</style></head><body>
<h1>Label budget: {escape(status.title)} (project {status.project})</h1>
{notice}
<p class="verdict{" spent" if status.is_spent else ""}" id="verdict">{escape(verdict(status, assessment))}</p>
<p id="bought">{escape(what_labels_bought(status, assessment))}</p>
<table id="numbers">{rows}</table>
<img id="figure" alt="Model quality against labels spent, labels per clinician, and what the labeled windows held"
 src="data:image/png;base64,{figure}">
<h2>Clinicians</h2>
<table id="clinicians"><tr><th>clinician</th><th>labels</th><th>budget</th><th>time (min)</th></tr>{clinicians}</table>
<p class="note">A label is one clinician's answer on one window. Quality is the area under the precision-recall
curve (1 = every spike found with no false alarm) on labels held back from training, after each retraining;
with few labels it is noisy, and the estimate of the labels still needed is rough. Model version
{escape(str(status.version))}; figures as of {made}, refreshed after each retraining.</p>
<p><a id="detections-link" href="../detections/{status.project}">Spikes found in the whole recording</a>
(the model run over every window, once a detection has been run).</p>
</body></html>"""


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def message_page(code: int, title: str, message: str, notice: str = "", after: str = "") -> Response:
    """A page that only says ``message`` (``notice``, ``after``: HTML shown before and after it)."""
    html = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{notice}<p id='message'>{escape(message)}</p>"
        f"{after}</body></html>"
    )
    return Response(html, code, mimetype="text/html")
