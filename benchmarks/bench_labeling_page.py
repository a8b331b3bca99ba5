"""Time from opening a task to its traces drawn, in Chromium against a real Label Studio (p50 / p95 per page size).

A Label Studio server (SQLite) runs in a temporary folder; synthetic patients of 21, 37 and 56 bipolar channels
(the demo patient, the same resized, the demo implanted with 8 shafts of 8 contacts) are imported as the importer
does (their events as predictions), and each of ``--tasks`` tasks per patient is opened in headless Chromium
(1600 x 1000) and timed from the navigation to every channel's trace drawn (the calibration row too).

    python -m benchmarks.bench_labeling_page        # writes benchmarks/results/labeling_page.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import write_result
from converters.synthetic import PATIENTS, PatientProfile, with_n_channels, write_bids

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # studio_server.py, helpers.py and editor_waits.py drive the editor

SECONDS = 120
EIGHT_SHAFTS = dict.fromkeys(("A", "B'", "C", "D", "E", "F", "G", "H"), 8)  # 56 bipolar channels


def eight_shafts_of_eight() -> PatientProfile:
    """The demo patient implanted with 8 shafts of 8 contacts (its artifact channel C9 moved to C8)."""
    demo = PATIENTS["A"]
    return demo.with_(shafts=EIGHT_SHAFTS, artifacts=dataclasses.replace(demo.artifacts, pop_channels=("C8",)))


def page_patients() -> dict[int, PatientProfile]:
    """The measured patients by their number of (bipolar) channels."""
    return {21: PATIENTS["A"], 37: with_n_channels(PATIENTS["A"], 40), 56: eight_shafts_of_eight()}


def import_patient(
    root: Path, studio_url: str, token: str, n_channels: int, profile: PatientProfile, n_tasks: int
) -> int:
    """Import ``profile``'s recording (its events as predictions) into a new project; the project's id."""
    from label_studio_sdk import LabelStudio

    import converters.cli as cli

    source = write_bids(root / f"bids{n_channels}", f"p{n_channels}", profile, SECONDS)
    title = f"Page {n_channels} channels"
    args = [str(source), "--patient", f"P{n_channels}", "--project", title, "--url", studio_url, "--api-key", token,
            "--store-dir", str(root / "stores"), "--events", "predictions", "--max-windows", str(n_tasks)]  # fmt: skip
    if cli.main(args) != 0:
        raise RuntimeError(f"the import of the {n_channels}-channel patient failed")
    projects: list[Any] = list(LabelStudio(base_url=studio_url, api_key=token).projects.list(title=title))
    return int(next(project.id for project in projects if project.title == title))


def time_pages(page: Any, studio_url: str, token: str, project_id: int) -> dict:
    """Open each task of the project in turn; seconds from the navigation to its traces drawn."""
    from editor_waits import wait_for_traces
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=studio_url, api_key=token)
    tasks: list[Any] = list(client.tasks.list(project=project_id, fields="all"))
    seconds: list[float] = []
    for task in tasks:
        n_rows = len(task.data["channels"].split(", ")) + 1  # and the calibration row
        started = time.perf_counter()
        page.goto(f"{studio_url}/projects/{project_id}/data?task={task.id}")
        wait_for_traces(page, n_rows)
        seconds.append(time.perf_counter() - started)
    series: dict[str, list[float]] = tasks[0].data["ts"]
    points = sum(len(values) for key, values in series.items() if key != "time")
    return {"n_tasks": len(seconds), "points_per_task": points, "first_s": seconds[0],
            "p50_s": float(np.percentile(seconds, 50)), "p95_s": float(np.percentile(seconds, 95))}  # fmt: skip


def run(root: Path, n_tasks: int) -> dict:
    from helpers import CHROMIUM, CHROMIUM_ARGS, logged_in_page
    from playwright.sync_api import sync_playwright
    from studio_server import running_studio

    results = []
    with running_studio(root / "studio") as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = logged_in_page(browser, server, timeout_ms=120_000)
            for n_channels, profile in page_patients().items():
                project_id = import_patient(root, server.url, server.token, n_channels, profile, n_tasks)
                results.append({"n_channels": n_channels, **time_pages(page, server.url, server.token, project_id)})
                print(f"{n_channels:>9}{results[-1]['p50_s']:>8.1f}{results[-1]['p95_s']:>8.1f}", flush=True)
        finally:
            browser.close()
    return {"pages": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20, help="tasks opened per patient (default 20)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "labeling_page.json")
    args = parser.parse_args(argv)
    print(f"{'channels':>9}{'p50 s':>8}{'p95 s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp), args.tasks)
    write_result(result, args.out, "bench_labeling_page", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
