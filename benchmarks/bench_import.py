"""Importing a real-size patient: tasks per second and Label Studio's database size, display data by URL vs inline.

A synthetic store (22 channels at 256 Hz, 2-s windows every 0.5 s, so that 100,000 windows are 14 hours; cached
under ``benchmarks/_data/detect``) is imported into a fresh Label Studio (SQLite) the way ``python -m
converters.import`` does (:func:`converters.tasks.make_tasks`, :func:`converters.studio.import_tasks`, batches of
``--batch-size``): ``--tasks`` tasks with ``--display-url`` (each task names its page) and ``--inline-tasks`` with
the traces inline (the default without ``--display-url``; extrapolated to ``--tasks``). The database is Label
Studio's ``label_studio.sqlite3`` with its write-ahead log. The backend's ``/display`` route is timed on the same
store (in process, through Flask's test client: the page drawn and serialised, no network).

    nice -n 5 python -m benchmarks.bench_import                          # 100,000 by URL, 5,000 inline
    python -m benchmarks.bench_import --tasks 2000 --inline-tasks 500 --out /tmp/import.json   # a quick look

Writes ``--out`` (JSON) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # studio_server.py starts the Label Studio server
DEFAULT_OUT = HERE / "results" / "import.json"
CHANNELS, STRIDE_SECONDS = 22, 0.5
TARGET_SECONDS, TARGET_DB_MB = 600.0, 1024.0  # issue 19: 100,000 tasks in under 10 minutes, database under 1 GB
DISPLAY_SAMPLES = 200


def store_for(n_tasks: int, cache: Path) -> Path:
    from benchmarks.bench_detect import synthetic_store

    hours = np.ceil(n_tasks * STRIDE_SECONDS / 3600 * 10) / 10 + 0.01
    return synthetic_store(cache, float(hours), CHANNELS, STRIDE_SECONDS)


def database_mb(folder: Path) -> float:
    files = list(folder.rglob("label_studio.sqlite3*"))
    return sum(f.stat().st_size for f in files) / 2**20


def import_run(store_path: Path, n_tasks: int, by_url: bool, batch_size: int, root: Path) -> dict:
    """Import ``n_tasks`` of the store into a fresh Label Studio; time, rate and database growth."""
    from label_studio_sdk import LabelStudio
    from studio_server import running_studio

    from converters import studio
    from converters.display import DisplayLinks
    from converters.labelconfig import make_label_config
    from converters.tasks import make_tasks, page_layout
    from converters.windows import WindowStore

    with running_studio(root) as server, WindowStore(store_path) as store:
        client = LabelStudio(base_url=server.url, api_key=server.token)
        layout = page_layout([store])
        config = make_label_config(store.ch_names, layout, display_by_url=by_url)
        project, _ = studio.get_or_create_project(client, "Import benchmark", config)
        before = database_mb(root)
        display = DisplayLinks("http://localhost:9090") if by_url else None
        tasks = make_tasks(store, patient="B", recording="synthetic", store_key="B/synthetic.h5",
                           rows=np.arange(n_tasks), layout=layout, display=display)  # fmt: skip
        started = time.perf_counter()
        created = studio.import_tasks(client, int(project.id), tasks, batch_size=batch_size, total=n_tasks)
        seconds = time.perf_counter() - started
        time.sleep(2)  # the write-ahead log settles
        grown = database_mb(root) - before
    return {
        "display": "url" if by_url else "inline",
        "tasks": len(created),
        "seconds": round(seconds, 1),
        "tasks_per_second": round(len(created) / seconds, 1),
        "database_mb": round(grown, 1),
        "kb_per_task": round(grown * 1024 / len(created), 2),
    }


def display_latency(store_path: Path, root: Path) -> dict:
    """``/display`` answered in process for ``DISPLAY_SAMPLES`` random windows: p50 and p95 in ms."""
    from converters.display import DisplayLinks
    from converters.tasks import page_layout
    from converters.windows import WindowStore
    from ls_backend.app import create_app
    from ls_backend.config import Settings
    from ls_backend.jobs import RetrainQueue

    settings = Settings(model_dir=root / "models", window_store_dir=store_path.parent)
    client = create_app(settings, None, RetrainQueue(settings.model_dir, lambda key: None)).test_client()  # type: ignore[arg-type]
    with WindowStore(store_path) as store:
        layout = page_layout([store])
        rows = np.random.default_rng(0).choice(len(store), DISPLAY_SAMPLES, replace=False)
        urls = [DisplayLinks("http://x").url(store_path.name, str(store.ids[r]), layout, 50_000) for r in rows]
    times, sizes = [], []
    for url in urls:
        started = time.perf_counter()
        response = client.get(url.removeprefix("http://x"))
        times.append(1000 * (time.perf_counter() - started))
        assert response.status_code == 200, response.json
        sizes.append(len(response.data))
    return {"p50_ms": round(float(np.percentile(times, 50)), 1), "p95_ms": round(float(np.percentile(times, 95)), 1),
            "kb_per_page": round(float(np.mean(sizes)) / 1024, 1)}  # fmt: skip


def table(result: dict) -> str:
    rows = [
        "| display | tasks | seconds | tasks/s | database | KB per task | for 100,000 tasks |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        scale = 100_000 / run["tasks"]
        rows.append(
            f"| {run['display']} | {run['tasks']:,} | {run['seconds']:.0f} | {run['tasks_per_second']:.0f} | "
            f"{run['database_mb']:.0f} MB | {run['kb_per_task']:.2f} | {run['seconds'] * scale / 60:.1f} min, "
            f"{run['database_mb'] * scale / 1024:.2f} GB |"
        )
    latency = result["display_route"]
    rows.append(f"\n/display route (in process, {DISPLAY_SAMPLES} pages of {latency['kb_per_page']} KB): "
                f"p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms")  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks imported by URL")
    parser.add_argument("--inline-tasks", type=int, default=5_000, help="tasks imported inline (0: none)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=HERE / "_data" / "detect")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    store_path = store_for(max(args.tasks, args.inline_tasks), args.cache)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_import_") as tmp:
        root = Path(tmp)
        runs.append(import_run(store_path, args.tasks, True, args.batch_size, root / "url"))
        if args.inline_tasks:
            runs.append(import_run(store_path, args.inline_tasks, False, args.batch_size, root / "inline"))
        latency = display_latency(store_path, root)
    result = {
        "command": "python -m benchmarks.bench_import " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {"channels": CHANNELS, "stride_seconds": STRIDE_SECONDS, "batch_size": args.batch_size,
                     "target_seconds_100k": TARGET_SECONDS, "target_database_mb_100k": TARGET_DB_MB},
        "runs": runs,
        "display_route": latency,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
