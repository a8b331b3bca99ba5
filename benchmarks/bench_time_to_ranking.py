"""Time from a submitted annotation to the new ranking live in Label Studio (issue 5's target: under 60 s).

A real Label Studio server (SQLite) and the backend under gunicorn, as deployed. A synthetic patient is imported
(``--tasks`` overlapping windows of one recording), the backend is connected (its cold-start ranking is timed too),
``--labels - 1`` annotations are submitted and their retraining awaited; then the last annotation is submitted, and
the clock runs until the backend has switched the project's ``model_version`` to the new ranking (after writing its
predictions: all of them, or in a large project the first part's, see ``ls_backend.retrain.push_ranking``). The
debounce (``RETRAIN_DEBOUNCE_SECONDS``, default 5 s) is part of the time. The backend's stage timings come from
``MODEL_DIR/<project>/last_run.json``. The tasks are imported with ``--display-url`` (the backend serves their
traces), as a project of this size should be. While the last run goes, the labeling stream's next task is asked for
every second (its latency: what a clinician waits for after a submit), and on while the backend deletes the old
rankings' predictions in the background (their time is reported too); the backend's peak memory is read at the end
(gunicorn's processes, the retraining runs in its worker).

    python -m benchmarks.bench_time_to_ranking                       # 20,000 tasks, 200 labels
    python -m benchmarks.bench_time_to_ranking --tasks 100000 --out benchmarks/results/time_to_ranking_100k.json
    python -m benchmarks.bench_time_to_ranking --tasks 2000 --labels 60 --out /tmp/ttr.json   # a quick look
    python -m benchmarks.bench_time_to_ranking --labels 100 --encoder-challenge \
        --out benchmarks/results/time_to_ranking_challenge.json   # the run after the pretrained encoder arrives
    python -m benchmarks.bench_time_to_ranking --labels 20 --first-labels \
        --out benchmarks/results/time_to_ranking_first_labels.json
    python -m benchmarks.bench_time_to_ranking --labels 20 --first-labels --during-pretraining \
        --out benchmarks/results/time_to_ranking_during_pretraining.json   # the same, pretraining running

With ``--first-labels`` the labels are submitted right after the cold-start ranking, one after the other, without
waiting for the runs they start, as a clinician who starts labeling at once would (the clock runs from the last
one). With ``--during-pretraining`` the backend runs with ``PRETRAIN_AFTER_IMPORT=1``: the encoder's pretraining
starts after the cold-start ranking, in the backend's worker, and competes with the retraining runs for the cores.
The result says whether the encoder was still missing when the last annotation was submitted (the measurement
counts only then) and when it arrived.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import write_result

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # studio_server.py starts the Label Studio server

WINDOW, STRIDE = 2.0, 0.5  # seconds: overlapping windows, so 20,000 tasks are under 3 hours of recording


def import_patient(root: Path, studio_url: str, token: str, n_tasks: int, display_url: str) -> None:
    """A synthetic recording with about ``n_tasks`` windows, imported with its events as predictions and its traces
    served by the backend at ``display_url`` (``--display-url``)."""
    import converters.cli as cli
    from converters.synthetic import PATIENTS, write_edf

    source = write_edf(root / "rec.edf", PATIENTS["A"], n_tasks * STRIDE + WINDOW)
    args = [str(source), "--patient", "TTR", "--url", studio_url, "--api-key", token, "--store-dir",
            str(root / "stores"), "--window", str(WINDOW), "--stride", str(STRIDE), "--max-windows", str(n_tasks),
            "--events", "predictions", "--batch-size", "1000", "--display-url", display_url]  # fmt: skip
    if cli.main(args) != 0:
        raise RuntimeError("the import failed")


def run_after(models: Path, project_id: int, since: float, timeout: float = 3600) -> dict:
    """The first retraining run that started after ``since`` (its last_run.json, written when it finished)."""
    path = models / str(project_id) / "last_run.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (run := json.loads(path.read_text())).get("started_at", 0) > since:
            return run
        time.sleep(0.2)
    raise RuntimeError(f"no retraining started after the annotation within {timeout:.0f} s")


def wait_until(done: Callable[[], object], failure: str, timeout: float = 3600, pause: float = 0.5) -> float:
    """Poll ``done`` every ``pause`` seconds until it is true: when it was (time.time()); RuntimeError ``failure``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(pause)
    return time.time()


def wait_idle(models: Path, project_id: int) -> None:
    wait_until(lambda: not (models / str(project_id) / "retrain.json").exists(), "the retraining queue did not drain")


def stale_versions(models: Path, project_id: int) -> list[str]:
    """Old rankings whose predictions the backend has still to delete (see ``ls_backend.cleanup``)."""
    from ls_backend.cleanup import stale_versions
    from ls_backend.project_state import ProjectState

    return stale_versions(ProjectState(models, str(project_id)))


def wait_encoder(models: Path, project_id: int) -> float:
    """When the background pretraining's encoder was saved (time.time(), polled)."""
    failure = "the background pretraining did not save an encoder"
    return wait_until(lambda: encoder_present(models, project_id), failure, pause=1.0)


def wait_cleaned(models: Path, project_id: int) -> float:
    """When the backend had deleted every old ranking's predictions (time.time())."""
    return wait_until(lambda: not stale_versions(models, project_id), "old rankings were not deleted")


CHALLENGE_PRETRAIN_STEPS = 30  # the challenge's cost does not depend on how long its encoder was pretrained


def pretrain_now(root: Path, server: Any, project_id: int) -> float:
    """The project's encoder, pretrained as ``PRETRAIN_AFTER_IMPORT`` does it but for fewer steps (the backend is
    idle meanwhile)."""
    from ls_backend.config import Settings
    from ls_backend.pretraining import AFTER_IMPORT, pretrain_project

    env = {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.token, "MODEL_DIR": str(root / "models"),
           "WINDOW_STORE_DIR": str(root / "stores")}  # fmt: skip
    params = replace(AFTER_IMPORT, steps=CHALLENGE_PRETRAIN_STEPS)
    return pretrain_project(Settings.from_env(env), project_id, params=params).seconds


def encoder_present(models: Path, project_id: int) -> bool:
    from ls_backend.registry import ModelRegistry

    return ModelRegistry(models).encoder_path(str(project_id)).exists()


def run(
    root: Path,
    n_tasks: int,
    n_labels: int,
    debounce: float,
    encoder_challenge: bool = False,
    during_pretraining: bool = False,
    first_labels: bool = False,
) -> dict:
    from label_studio_sdk import LabelStudio
    from studio_server import running_studio

    from benchmarks.bench_backend import start_backend
    from converters import studio
    from converters.labelconfig import window_result

    with running_studio(root / "studio") as server:
        client = LabelStudio(base_url=server.url, api_key=server.token)
        proc, url = start_backend(
            root,
            {
                "LABEL_STUDIO_URL": server.url,
                "LABEL_STUDIO_API_KEY": server.token,
                "RETRAIN_DEBOUNCE_SECONDS": str(debounce),
                "PRETRAIN_AFTER_IMPORT": "1" if during_pretraining else "0",
            },
        )
        try:
            t0 = time.perf_counter()
            import_patient(root, server.url, server.token, n_tasks, url)
            import_seconds = time.perf_counter() - t0
            project = next(p for p in client.projects.list() if p.title == "Spikes TTR")
            connected = time.time()
            studio.connect_ml_backend(client, project.id, url)
            cold_start = run_after(root / "models", project.id, connected)
            print(f"cold-start ranking live after {since(connected, cold_start, 'live'):.1f} s", flush=True)
            truth = oracle(client, project.id, root / "stores")
            print(f"submitting {n_labels - 1} annotations", flush=True)
            order = np.random.default_rng(0).permutation(sorted(truth))
            for task_id in order[: n_labels - 1]:
                client.annotations.create(id=int(task_id), result=[window_result(truth[task_id])])
            if not first_labels:
                wait_idle(root / "models", project.id)
            pretrain_seconds = pretrain_now(root, server, project.id) if encoder_challenge else None
            stale_at_submit = stale_versions(root / "models", project.id)  # still being deleted: the run goes first
            encoder_at_submit = encoder_present(root / "models", project.id)
            submitted = time.time()
            client.annotations.create(id=int(order[n_labels - 1]), result=[window_result(truth[order[n_labels - 1]])])
            with StreamProbe(server.url, server.token, project.id) as stream:  # a clinician asking for tasks
                last = run_after(root / "models", project.id, submitted)
                encoder_at_run_end = encoder_present(root / "models", project.id)
                during_run = stream.summary(restart=True)
                cleanup_seconds = wait_cleaned(root / "models", project.id) - (
                    last["started_at"] + last["seconds"]["total"]
                )
                during_cleanup = stream.summary()
            encoder_arrived = wait_encoder(root / "models", project.id) if during_pretraining else None
            backend_rss_mb = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
    return {
        "tasks": len(truth), "labels": n_labels, "debounce_seconds": debounce, "import_seconds": import_seconds,
        "cold_start_ranking_seconds": since(connected, cold_start, "live"),
        "annotation_to_live_ranking_seconds": since(submitted, last, "live"),
        "annotation_to_run_finished_seconds": since(submitted, last, "total"),
        "old_rankings_deleted_after_run_seconds": cleanup_seconds, "stale_rankings_at_annotation": stale_at_submit,
        "labeling_stream_during_run": during_run, "labeling_stream_during_cleanup": during_cleanup,
        "backend_peak_rss_mb": backend_rss_mb,
        "encoder_challenge": encoder_challenge, "pretrain_seconds": pretrain_seconds,
        "pretrain_steps": CHALLENGE_PRETRAIN_STEPS if encoder_challenge else None,
        "first_labels": first_labels, "during_pretraining": during_pretraining,
        "encoder_present_at_annotation": encoder_at_submit,
        "encoder_present_when_run_finished": encoder_at_run_end,
        "encoder_arrived_after_cold_start_seconds": None if encoder_arrived is None else encoder_arrived - connected,
        "cold_start_run": cold_start, "last_run": last,
    }  # fmt: skip


class StreamProbe:
    """The labeling stream's next task (``GET /api/projects/<id>/next``, what the editor asks after a submit),
    requested every ``pause`` seconds in a thread while the retraining runs: its latencies."""

    def __init__(self, url: str, token: str, project_id: int, pause: float = 1.0):
        import threading

        import httpx

        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=60)
        self.path, self.pause = f"/api/projects/{project_id}/next", pause
        self.seconds: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._probe, daemon=True)

    def __enter__(self) -> StreamProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.client.close()

    def _probe(self) -> None:
        while not self.stop.wait(self.pause):
            started = time.perf_counter()
            self.client.get(self.path).raise_for_status()
            self.seconds.append(time.perf_counter() - started)

    def summary(self, restart: bool = False) -> dict:
        """Latencies so far; with ``restart``, the next summary counts only the requests after this one."""
        n, times = len(self.seconds), np.array(self.seconds or [np.nan])
        if restart:
            self.seconds = []
        return {"requests": n, "p50_seconds": float(np.percentile(times, 50)),
                "p95_seconds": float(np.percentile(times, 95)), "max_seconds": float(times.max())}  # fmt: skip


def peak_rss_mb(pid: int) -> float:
    """The largest peak resident memory (VmHWM) of a process and its children (gunicorn's master and worker)."""
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    peaks = []
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


def since(moment: float, run: dict, mark: str) -> float | None:
    """Seconds from ``moment`` to the run's ``mark`` (None: the run kept the live ranking)."""
    seconds = run["seconds"].get(mark)
    return None if seconds is None else run["started_at"] + seconds - moment


def oracle(client, project_id: int, store_dir: Path) -> dict[int, str]:
    """The window choice of every task, from the recording's events (the synthetic ground truth)."""
    from converters import studio
    from converters.tasks import event_results
    from converters.windows import WindowStore

    choice = {}
    for path in store_dir.rglob("*.h5"):
        with WindowStore(path) as store:  # the window choice the importer's event predictions carry
            annotations, duration = store.annotations(), store.window_samples / store.sfreq
            for window_id, start in zip(store.ids, store.starts):
                result = event_results(annotations, start / store.sfreq, duration, str(window_id))
                choice[str(window_id)] = result[-1]["value"]["choices"][0]
    index = studio.task_index(client, project_id)
    return {task_id: choice[meta["window_id"]] for task_id, meta in index.items() if meta is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--debounce", type=float, default=5.0, help="RETRAIN_DEBOUNCE_SECONDS (default 5)")
    parser.add_argument(
        "--encoder-challenge",
        action="store_true",
        help="pretrain the project's encoder before the last annotation: its run trains a candidate from the "
        "encoder to challenge the serving model (what a project sees once PRETRAIN_AFTER_IMPORT's encoder arrives)",
    )
    parser.add_argument(
        "--first-labels",
        action="store_true",
        help="submit the labels right after the cold-start ranking without waiting for the runs they start",
    )
    parser.add_argument(
        "--during-pretraining",
        action="store_true",
        help="PRETRAIN_AFTER_IMPORT=1: the encoder's pretraining runs in the backend while the labels arrive",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "time_to_ranking.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(
            Path(tmp),
            args.tasks,
            args.labels,
            args.debounce,
            args.encoder_challenge,
            args.during_pretraining,
            args.first_labels,
        )
    print(f"{'last run, stage':<38}{'seconds':>9}")
    for name, value in result["last_run"]["seconds"].items():
        print(f"{'  ' + name:<38}{value:>9.1f}")
    for name in (
        "import_seconds",
        "cold_start_ranking_seconds",
        "annotation_to_live_ranking_seconds",
        "annotation_to_run_finished_seconds",
        "backend_peak_rss_mb",
    ):
        print(f"{name:<38}{result[name] or float('nan'):>9.1f}")
    print(f"{'old_rankings_deleted_after_run_seconds':<38}{result['old_rankings_deleted_after_run_seconds']:>9.1f}")
    if result["during_pretraining"]:
        print(f"encoder present at the annotation: {result['encoder_present_at_annotation']}, when the run "
              f"finished: {result['encoder_present_when_run_finished']}; it arrived "
              f"{result['encoder_arrived_after_cold_start_seconds']:.0f} s after the cold start")  # fmt: skip
    print(f"labeling stream during the run: {result['labeling_stream_during_run']}")
    print(f"labeling stream during the deletion: {result['labeling_stream_during_cleanup']}")
    write_result(result, args.out, "bench_time_to_ranking", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
