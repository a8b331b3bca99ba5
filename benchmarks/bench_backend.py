"""ML backend benchmark: /predict latency (1 and 10 tasks) and a burst of webhooks, against gunicorn.

A synthetic patient is converted into a window store, a model is trained on its windows and promoted, and the
backend runs under gunicorn exactly as deployed. Latency is measured from a client on the same machine.
The burst sends 100 ANNOTATION_CREATED webhooks in about 10 s with a 2 s debounce and counts the retrainings
the queue starts (the job here records its runs instead of calling Label Studio: what is measured is the queue).

    python -m benchmarks.bench_backend               # writes benchmarks/results/backend.json
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks import write_result

HERE = Path(__file__).resolve().parent


def prepare(root: Path) -> list[dict]:
    """A converted synthetic patient, a promoted model, and the tasks /predict will receive."""
    from converters.convert import convert_recording
    from converters.synthetic import PATIENTS, write_edf
    from converters.tasks import make_tasks
    from converters.windows import WindowStore
    from ls_backend.model.estimator import SpikeDetector
    from ls_backend.registry import ModelRegistry

    source = write_edf(root / "rec.edf", PATIENTS["A"], 300)
    convert_recording(source, root / "stores" / "P" / "rec.h5")
    with WindowStore(root / "stores" / "P" / "rec.h5") as store:
        tasks = list(make_tasks(store, patient="P", recording="rec.edf", store_key="P/rec.h5", events="predictions"))
        X = store.read_windows([t["data"]["window_id"] for t in tasks])
    y = np.array([t["predictions"][0]["result"][-1]["value"]["choices"] == ["Spike"] for t in tasks], np.float32)
    model = SpikeDetector(epochs=3, seed=0).fit(X, y)
    ModelRegistry(root / "models").promote(1, model, {"labels_used": len(y)})
    return [{"id": k + 1, "data": t["data"]} for k, t in enumerate(tasks)]


def start_backend(root: Path, settings: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """gunicorn on a free port with MODEL_DIR and WINDOW_STORE_DIR in ``root`` (and ``settings`` on top)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = (
        os.environ
        | {
            "MODEL_DIR": str(root / "models"),
            "WINDOW_STORE_DIR": str(root / "stores"),
            "LABEL_STUDIO_URL": "http://127.0.0.1:9",
            "RETRAIN_DEBOUNCE_SECONDS": "2",
        }
        | (settings or {})
    )
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log = open(root / "backend.log", "w")  # noqa: SIM115 - the server writes it until it exits
    proc = subprocess.Popen(
        [str(gunicorn), "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4", "ls_backend.wsgi:app"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the backend did not start")


def predict_latency(url: str, tasks: list[dict], n_tasks: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    times = []
    with httpx.Client(timeout=100) as client:
        for _ in range(repeats):
            batch = [tasks[i] for i in rng.choice(len(tasks), n_tasks, replace=False)]
            start = time.perf_counter()
            response = client.post(f"{url}/predict", json={"project": "1.1700000000", "tasks": batch})
            times.append(time.perf_counter() - start)
            response.raise_for_status()
    ms = 1000 * np.array(times[1:])  # the first call loads the model
    return {
        "n_tasks": n_tasks,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "first_call_ms": 1000 * times[0],
        "repeats": repeats,
    }


def webhook_burst(url: str, root: Path, n: int = 100, seconds: float = 10.0) -> dict:
    statuses = []
    with httpx.Client(timeout=5) as client:
        start = time.perf_counter()
        for k in range(n):
            body = {"action": "ANNOTATION_CREATED", "project": {"id": 2}, "annotation": {"id": k}}
            statuses.append(client.post(f"{url}/webhook", json=body).status_code)
            time.sleep(max(0.0, start + (k + 1) * seconds / n - time.perf_counter()))
        elapsed = time.perf_counter() - start
        time.sleep(8)  # the debounce and the (failing: no Label Studio here) job
        metrics = dict(line.split() for line in client.get(f"{url}/metrics").text.splitlines() if line)
    runs = sum(int(float(metrics.get(f"spike_backend_retrain_{name}", 0))) for name in ("done", "failed"))
    return {
        "webhooks": n,
        "seconds": elapsed,
        "errors": sum(s >= 300 for s in statuses),
        "trainings_started": runs,
        "still_queued": (root / "models" / "2" / "retrain.json").exists(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "backend.json")
    parser.add_argument("--repeats", type=int, default=41)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tasks = prepare(root)
        proc, url = start_backend(root)
        try:
            latency = [predict_latency(url, tasks, n, args.repeats) for n in (1, 10)]
            burst = webhook_burst(url, root)
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"{'tasks':>6}{'p50 ms':>9}{'p95 ms':>9}{'first ms':>10}")
    for row in latency:
        print(f"{row['n_tasks']:>6}{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}{row['first_call_ms']:>10.1f}")
    print(f"webhook burst: {burst}")
    write_result({"predict": latency, "webhook_burst": burst}, args.out, "bench_backend", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
