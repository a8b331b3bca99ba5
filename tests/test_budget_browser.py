"""The /report page in real Chromium, served by the backend's app behind basic auth: what a manager sees."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import serving

from ls_backend.app import create_app
from ls_backend.budget import Budget, compute_status
from ls_backend.budget.status import save_status
from ls_backend.config import Settings
from ls_backend.labels import TaskLabel

pytest.importorskip("playwright")

CREDENTIALS = {"username": "manager", "password": "report-test-pass"}


def demo_status():
    """A patient 180 labels into a 200-label budget, two clinicians, seven validated retrainings."""
    rng = np.random.default_rng(0)
    labels = [
        TaskLabel(k, f"w{k}", "P/rec.h5", 0.0, float(k % 5 == 0), annotators=[1 if k % 3 else 2], lead_times=[12.0])
        for k in range(180)
    ]
    sizes = [20, 40, 60, 90, 120, 150, 180]
    history = [
        {"version": f"p7-v{k + 1:04d}", "labels_used": n,
         "metrics": {"n_validation": n // 5, "candidate_auprc": float(0.86 - 2.2 * n**-0.6 + rng.normal(0, 0.01))}}
        for k, n in enumerate(sizes)
    ]  # fmt: skip
    budget = Budget(200, {"dr.b@hospital.org": 80}, 0.8)
    return compute_status("7", "Spikes P07", budget, labels, history, {1: "dr.a@hospital.org", 2: "dr.b@hospital.org"})


@pytest.fixture
def report_server(tmp_path):
    settings = Settings(model_dir=tmp_path / "models", basic_auth_user=CREDENTIALS["username"],
                        basic_auth_pass=CREDENTIALS["password"])  # fmt: skip
    save_status(settings.model_dir, demo_status())
    with serving(create_app(settings, engine=None)) as url:
        yield url


def test_the_report_page_reads_well_in_chromium(browser, report_server, tmp_path, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, http_credentials=CREDENTIALS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        response = page.goto(f"{report_server}/report/7")
        assert response.status == 200
        assert page.title() == "Label budget: Spikes P07"
        numbers = {
            row.locator("th").inner_text(): row.locator("td").inner_text() for row in page.locator("#numbers tr").all()
        }
        assert numbers["Budget"] == "200 labels"
        assert numbers["Labels spent"] == "180" and numbers["Labels remaining"] == "20 labels"
        assert numbers["Spike windows found"] == "36"
        assert numbers["Clinician time"].startswith("36 min 00 s")
        assert "more labels" in numbers["Labels to reach the target"]
        verdict = page.locator("#verdict").inner_text()
        assert "Keep labeling" in verdict and "The budget has 20 labels left" in verdict
        assert (
            "180 labels (36 min 00 s of clinician time) bought 36 spike windows" in page.locator("#bought").inner_text()
        )
        clinicians = page.locator("#clinicians tr").all_inner_texts()
        assert any("dr.b@hospital.org" in row and "80" in row for row in clinicians)
        width = page.locator("#figure").evaluate("img => img.complete ? img.naturalWidth : 0")
        assert width > 800  # the figure decoded and drew
        page.screenshot(path=tmp_path / "report.png", full_page=True)
        assert errors == []

        missing = page.goto(f"{report_server}/report/8")
        assert missing.status == 404 and "never seen project 8" in page.locator("#message").inner_text()
        bad = page.goto(f"{report_server}/report/P07")
        assert bad.status == 400 and "is not a Label Studio project id" in page.locator("#message").inner_text()
    finally:
        context.close()
    request.node.user_properties.append(("screenshot", str(tmp_path / "report.png")))
