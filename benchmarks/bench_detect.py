"""Whole-recording detection at scale: time and peak memory of :func:`ls_backend.detect.detect_store` against the
recording's length.

Window stores of 1 h and 24 h (22 channels at 256 Hz; synthetic patient A resized, written straight into a store
block by block, so making them is quick and bounded) are cached under ``benchmarks/_data/detect``. Each size is
scored in its own process, which reports its wall time and its peak RSS (``ru_maxrss``) before and after scoring:

* ``model``: the default spike model (:class:`~ls_backend.model.estimator.SpikeDetector` with default parameters and
  untrained weights: speed and memory do not depend on the weights; the threshold is set so that the untrained
  network yields about as many events as a trained one would, see :data:`EVENTS_PER_MINUTE`);
* ``cold-start``: the classical detector (:class:`~ls_backend.detect.scoring.TransientScorer`, its statistics
  included).

    python -m benchmarks.bench_detect                    # 1 h and 24 h (about 10 minutes on 2 cores)
    python -m benchmarks.bench_detect --hours 1 4 --scorers model
    python -m benchmarks.bench_detect --quick --out /tmp/detect_scale.json     # tiny, for CI

Writes ``--out`` (JSON: settings, per run wall time, windows per second, peak RSS, the extrapolated time of a 3-day
recording, machine) and the PNG next to it, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "detect_scale.json"
CACHE = HERE / "_data" / "detect"
MODEL_RESULT = HERE / "results" / "model.json"
SCORERS = ("model", "cold-start")
SFREQ = 256.0
MODEL_WINDOW_SECONDS = 1.0  # the spike model's training windows (as the replay and model benchmarks train it)
STORE_WINDOW_SECONDS = 2.0  # the stores' task windows (the converter's default); the classical detector's window
EVENTS_PER_MINUTE = 10.0  # the untrained model's threshold: the quantile that gives about this many events
THREE_DAYS_HOURS = 72.0
QUICK_HOURS = (0.05, 0.2)


# ---------------------------------------------------------------------------------------------- data


def synthetic_store(cache: Path, hours: float, n_chans: int, stride_seconds: float = STORE_WINDOW_SECONDS) -> Path:
    """A window store of ``hours`` of synthetic patient A resized to ``n_chans`` channels at 256 Hz (monopolar
    microvolts as generated: the store's content, not the converter, is what detection reads), 2-s windows every
    ``stride_seconds``, cached in ``cache``."""
    from converters.preprocess import robust_scale
    from converters.synthetic import benchmark_profile, iter_chunks
    from converters.windows import StoreWriter, WindowParams, window_ids, window_starts

    stride_tag = "" if stride_seconds == STORE_WINDOW_SECONDS else f"_stride{stride_seconds:g}s"
    path = cache / f"synthetic_{n_chans}ch_{hours:g}h{stride_tag}.h5"
    if path.exists():
        return path
    profile = benchmark_profile(SFREQ, n_chans, "A")
    seconds = hours * 3600.0
    n_times = round(seconds * SFREQ)
    window, stride = WindowParams(STORE_WINDOW_SECONDS, stride_seconds).samples(SFREQ)
    started = time.perf_counter()
    writer = StoreWriter(path, n_chans, n_times)
    try:
        scale = None
        for chunk in iter_chunks(profile, seconds, 60.0):
            scale = robust_scale(chunk) if scale is None else scale
            writer.append(chunk)
        starts = window_starts(n_times, window, stride)
        writer.write_index(window_ids(f"synthetic-{path.stem}", starts, SFREQ, window), starts)
        writer.write_annotations([])
        writer.set_attrs(
            sfreq=SFREQ,
            ch_names=profile.ch_names,
            channel_scale_uv=np.asarray(scale, np.float32),
            window_samples=window,
            stride_samples=stride,
            provenance={
                "source": f"synthetic patient A, {n_chans} channels, {hours:g} h",
                "source_ch_names": profile.ch_names,
                "montage": "monopolar",
                "meas_date": None,
            },
        )
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    print(f"wrote {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


# ---------------------------------------------------------------------------------------------- one measurement


def cpu_seconds() -> float:
    """This process's CPU time so far (user + system, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (``ru_maxrss``, kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def untrained_model(n_chans: int) -> Any:
    """The default spike model with its initial (untrained) weights, on windows of ``MODEL_WINDOW_SECONDS``."""
    from ls_backend.model import SpikeDetector

    n_times = round(MODEL_WINDOW_SECONDS * SFREQ)
    return SpikeDetector(epochs=0, sfreq=SFREQ).fit(np.zeros((2, n_chans, n_times), np.float32), np.array([0.0, 1.0]))


def event_threshold(store: Any, scorer: Any, minutes: float = 2.0) -> float:
    """The probability quantile of the first ``minutes`` of ``store`` above which about ``EVENTS_PER_MINUTE``
    spike-long (100 ms) stretches lie: an untrained network's outputs sit in a narrow band around an arbitrary
    value, and a threshold outside it gives no events or one per second."""
    from ls_backend.detect.scoring import read_signal

    n = min(int(store.file["signal"].shape[1]), round(minutes * 60 * SFREQ)) // scorer.n_times * scorer.n_times
    X = read_signal(store, 0, n).reshape(store.n_chans, -1, scorer.n_times).transpose(1, 0, 2)
    peak = np.nanmax(scorer.score(X), axis=1).ravel()
    fraction = EVENTS_PER_MINUTE * 0.1 / 60
    return float(np.quantile(peak, 1 - fraction))


def measure(store_path: Path, scorer_name: str) -> dict[str, Any]:
    """Score a whole store once (in this process) and report time, scoring windows, events and peak RSS."""
    import torch

    from converters.windows import WindowStore
    from ls_backend.detect.scoring import ModelScorer, TransientScorer, detect_store, signal_length, window_layout

    with WindowStore(store_path) as store:
        n_samples = signal_length(store, store.window_samples)
        started = time.perf_counter()
        if scorer_name == "model":
            scorer: Any = ModelScorer(untrained_model(store.n_chans), "untrained")
            threshold = event_threshold(store, scorer)
        else:
            scorer, threshold = TransientScorer.for_store(store), 0.5
        setup_seconds = time.perf_counter() - started
        rss_before, load_before = peak_rss_mb(), os.getloadavg()[0]
        started, cpu_started = time.perf_counter(), cpu_seconds()
        events = detect_store(store, scorer, threshold)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
        n_windows = len(window_layout(n_samples, scorer.n_times)[0])
        hours = n_samples / store.sfreq / 3600
        return {
            "scorer": scorer_name,
            "hours": hours,
            "n_chans": store.n_chans,
            "scoring_window_samples": scorer.n_times,
            "threshold": threshold,
            "setup_seconds": setup_seconds,
            "seconds": seconds,
            "seconds_per_hour": seconds / hours,
            "cpu_seconds": cpu,
            "cpu_seconds_per_hour": cpu / hours,
            "windows_per_second": n_windows / seconds,
            "channel_windows_per_second": n_windows * store.n_chans / seconds,
            "n_events": len(events),
            "events_per_minute": len(events) / hours / 60,
            "peak_rss_mb_before_scoring": rss_before,
            "peak_rss_mb": peak_rss_mb(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1min": [load_before, os.getloadavg()[0]],  # other tenants share the cores
        }


def run_child(store_path: Path, scorer_name: str) -> dict[str, Any]:
    """:func:`measure` in a fresh process (its own peak RSS), niced like its parent."""
    command = [sys.executable, "-m", "benchmarks.bench_detect", "--child", str(store_path), "--scorers", scorer_name]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=HERE.parent)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- report


def model_benchmark_minutes() -> float | None:
    """The 3-day time that ``model.json`` implies for scoring at half a window's stride (every sample scored by two
    windows: twice its non-overlapping 1-s windows on 2 threads); None without that file."""
    if not MODEL_RESULT.exists():
        return None
    estimator = json.loads(MODEL_RESULT.read_text()).get("speed", {}).get("estimator", {})
    minutes = estimator.get("three_day_24ch_minutes_2t")
    return None if minutes is None else 2 * float(minutes)


def summarize(runs: list[dict]) -> dict[str, dict]:
    """Per scorer: the 3-day extrapolation from its longest run, and peak RSS of the longest over the shortest."""
    summary = {}
    for name in dict.fromkeys(r["scorer"] for r in runs):
        own = sorted((r for r in runs if r["scorer"] == name), key=lambda r: r["hours"])
        short, long = own[0], own[-1]
        summary[name] = {
            "three_day_minutes": long["seconds_per_hour"] * THREE_DAYS_HOURS / 60,
            "three_day_minutes_with_setup": (long["seconds_per_hour"] * THREE_DAYS_HOURS + long["setup_seconds"]) / 60,
            "three_day_cpu_minutes": long["cpu_seconds_per_hour"] * THREE_DAYS_HOURS / 60,
            "peak_rss_ratio_longest_to_shortest": long["peak_rss_mb"] / short["peak_rss_mb"],
            "hours": [r["hours"] for r in own],
        }
    return summary


def table(result: dict) -> str:
    lines = [
        "| scorer | recording | wall | s per hour | CPU s per hour | windows/s | channel-windows/s | events/min | "
        "peak RSS before -> after scoring | load (1 min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['scorer']} | {r['hours']:g} h | {r['seconds']:.0f} s | {r['seconds_per_hour']:.1f} | "
            f"{r['cpu_seconds_per_hour']:.1f} | {r['windows_per_second']:.0f} | "
            f"{r['channel_windows_per_second']:.0f} | {r['events_per_minute']:.1f} | "
            f"{r['peak_rss_mb_before_scoring']:.0f} -> {r['peak_rss_mb']:.0f} MB | "
            f"{r['load_average_1min'][0]:.1f} -> {r['load_average_1min'][1]:.1f} |"
        )
    for name, s in result["summary"].items():
        lines.append(
            f"{name}: 3 days x {result['settings']['n_chans']} channels ~ {s['three_day_minutes']:.1f} min on "
            f"{result['machine']['cpus']} cores ({s['three_day_cpu_minutes']:.1f} CPU minutes); "
            f"peak RSS {s['hours'][-1]:g} h / {s['hours'][0]:g} h = "
            f"{s['peak_rss_ratio_longest_to_shortest']:.2f}"
        )
    implied = result.get("model_benchmark_three_day_minutes")
    if implied is not None:
        lines.append(f"the model benchmark implies {implied:.1f} min for 3 days at half a window's stride")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed_ax, memory_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for name, color in zip(result["summary"], colors):
        own = [r for r in result["runs"] if r["scorer"] == name]
        hours = [r["hours"] for r in own]
        speed_ax.plot(hours, [r["seconds_per_hour"] for r in own], "o-", color=color, label=f"{name}: wall")
        speed_ax.plot(hours, [r["cpu_seconds_per_hour"] for r in own], "x:", color=color, label=f"{name}: CPU")
        memory_ax.plot(hours, [r["peak_rss_mb"] for r in own], "o-", color=color, label=f"{name}: peak")
        memory_ax.plot(
            hours, [r["peak_rss_mb_before_scoring"] for r in own], "x:", color=color, label=f"{name}: before scoring"
        )
    speed_ax.set_ylabel("seconds per hour of recording")
    memory_ax.set_ylabel("peak RSS (MB)")
    memory_ax.set_ylim(bottom=0)
    speed_ax.set_ylim(bottom=0)
    for ax in (speed_ax, memory_ax):
        ax.set_xscale("log")
        ax.set_xlabel(f"recording length (hours, {result['settings']['n_chans']} channels at {SFREQ:g} Hz)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    speed_ax.set_title(f"scoring time ({result['machine']['cpus']} cores shared with other jobs)")
    memory_ax.set_title("peak resident memory of the scoring process")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_detect",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 24.0], help="recording lengths")
    parser.add_argument("--channels", type=int, default=22, help="channels of each recording")
    parser.add_argument("--scorers", nargs="+", choices=SCORERS, default=list(SCORERS))
    parser.add_argument("--quick", action="store_true", help=f"recordings of {QUICK_HOURS} hours (CI)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="folder of the synthetic stores (reused)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output; the PNG goes next to it")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: measure one store here
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.child, args.scorers[0])))
        return 0
    hours = sorted(QUICK_HOURS if args.quick else args.hours)
    if any(h <= 0 for h in hours) or args.channels < 1:
        raise SystemExit(f"--hours must be positive and --channels at least 1, got {hours} and {args.channels}")
    started = time.perf_counter()
    stores = {h: synthetic_store(args.cache, h, args.channels) for h in hours}
    runs = []
    for name in args.scorers:
        for h in hours:
            runs.append(run_child(stores[h], name))
            print(f"{name} {h:g} h: {runs[-1]['seconds']:.0f} s, peak RSS {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
    result = {
        "command": "python -m benchmarks.bench_detect " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {
            "hours": hours,
            "n_chans": args.channels,
            "sfreq": SFREQ,
            "model_window_seconds": MODEL_WINDOW_SECONDS,
            "store_window_seconds": STORE_WINDOW_SECONDS,
            "model": "default SpikeDetector, untrained weights",
        },
        "runs": runs,
        "summary": summarize(runs),
        "model_benchmark_three_day_minutes": model_benchmark_minutes(),
        "wall_seconds": time.perf_counter() - started,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_end": list(os.getloadavg()),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    plot(result, args.out.with_suffix(".png"))
    print(table(result))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
