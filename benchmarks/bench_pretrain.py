"""Pretraining a patient's encoder at scale: time and peak memory of :mod:`ls_backend.model.pretrain` against the
recording's length.

The window stores are bench_detect's (synthetic patient A, 22 channels at 256 Hz, 2-s windows, cached under
``benchmarks/_data/detect``). Each size runs in its own process, which reports the time to draw the channel-windows
from the store (:func:`~ls_backend.model.pretrain.sample_channel_windows`), the time of the pretraining itself
(:func:`~ls_backend.model.pretrain.pretrain_encoder`, the default model and :class:`PretrainParams`, torch's default
threads as the pretraining job uses them), and its peak RSS (``ru_maxrss``) before and after. ``--model`` changes
the encoder (a larger one, or ``device=cuda``); ``--windowset`` draws from a window set's arrays instead of a store
(a machine without MNE or the synthetic generator: the pretraining's cost does not depend on where its
channel-windows come from).

    python -m benchmarks.bench_pretrain                  # 1 h and 24 h
    python -m benchmarks.bench_pretrain --quick --out /tmp/pretrain_scale.json     # tiny, for CI
    python -m benchmarks.bench_pretrain --windowset SET.npz --model device=cuda,width=64,depth=8

Writes ``--out`` (JSON) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks.bench_detect import CACHE, cpu_seconds, peak_rss_mb, synthetic_store
from benchmarks.replay import add_model_option

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "pretrain_scale.json"
N_CHANS = 22


@contextmanager
def open_source(path: Path) -> Iterator[tuple[Any, float, int, int]]:
    """``(source, sfreq, n_chans, window_samples)`` of a window store (``.h5``, as the converters write it) or of a
    window set's windows (``.npz``, see :mod:`converters.windowset`)."""
    if path.suffix == ".npz":
        from converters.windowset import load_windowset
        from ls_backend.model.pretrain import ArraySource

        ws = load_windowset(path)
        yield ArraySource(ws.X), ws.sfreq, ws.X.shape[1], ws.X.shape[2]
        return
    from converters.windows import WindowStore

    with WindowStore(path) as store:
        yield store, store.sfreq, store.n_chans, store.window_samples


def measure(source_path: Path, steps: int | None, model: dict[str, Any]) -> dict[str, Any]:
    """Sample and pretrain once from one store or window set (in this process): times, loss and peak RSS."""
    import torch

    from ls_backend.model.pretrain import PretrainParams, pretrain_encoder, sample_channel_windows

    params = PretrainParams() if steps is None else replace(PretrainParams(), steps=steps)
    with open_source(source_path) as (store, sfreq, n_chans, window_samples):
        hours = len(store) * window_samples / sfreq / 3600
        rss_start, load_start = peak_rss_mb(), os.getloadavg()[0]
        started = time.perf_counter()
        windows = sample_channel_windows([store], params.n_windows, seed=0, sfreq=sfreq, pairs=params.pairs)
        sampling = time.perf_counter() - started
        rss_sampled = peak_rss_mb()
        started, cpu_started = time.perf_counter(), cpu_seconds()
        encoder = pretrain_encoder(windows, model, params, seed=0)
        return {
            "hours": hours,
            "n_chans": n_chans,
            "store_windows": len(store),
            "window_samples": window_samples,
            "model": model,
            "sampled_channel_windows": len(windows),
            "sampling_seconds": sampling,
            "pretraining_seconds": time.perf_counter() - started,
            "pretraining_cpu_seconds": cpu_seconds() - cpu_started,
            "steps": params.steps,
            "loss_first_10": sum(encoder.losses[:10]) / 10,
            "loss_last_10": sum(encoder.losses[-10:]) / 10,
            "peak_rss_mb_start": rss_start,
            "peak_rss_mb_after_sampling": rss_sampled,
            "peak_rss_mb": peak_rss_mb(),
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
            "torch_threads": torch.get_num_threads(),
            "load_average_1min": [load_start, os.getloadavg()[0]],  # other tenants share the cores
            "params": asdict(params),
        }


def model_text(model: dict[str, Any]) -> str:
    """``--model``'s text of encoder parameters (``width=64,depth=8``)."""
    return ",".join(f"{k}={v}" for k, v in model.items())


def run_child(store_path: Path, steps: int | None, model: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure` in a fresh process (its own peak RSS)."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_pretrain",
        "--child",
        str(store_path),
        "--model",
        model_text(model),
    ]
    command += [] if steps is None else ["--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=HERE.parent)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(runs: list[dict]) -> str:
    lines = [
        "| recording | encoder | channel-windows drawn | drawing (s) | pretraining (s) | steps | loss first → last | "
        "peak RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in runs:
        encoder = model_text(r.get("model", {})) or "default"
        lines.append(
            f"| {r['hours']:.3g} h, {r['n_chans']} ch. | {encoder} | {r['sampled_channel_windows']} | "
            f"{r['sampling_seconds']:.0f} | "
            f"{r['pretraining_seconds']:.0f} | {r['steps']} | {r['loss_first_10']:.2f} → {r['loss_last_10']:.2f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 24.0], help="recording lengths")
    parser.add_argument("--steps", type=int, help="pretraining steps (default: PretrainParams's)")
    parser.add_argument("--quick", action="store_true", help="a 3-minute recording and 5 steps (CI)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output")
    parser.add_argument(
        "--windowset", type=Path, help="draw from this window set's windows (.npz) instead of synthetic stores"
    )
    add_model_option(parser)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.model)))
        return 0
    hours, steps = ([0.05], 5) if args.quick else (args.hours, args.steps)
    sources = [args.windowset.resolve()] if args.windowset else [synthetic_store(CACHE, h, N_CHANS) for h in hours]
    started = time.perf_counter()
    runs: list[dict] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for source in sources:  # the file is rewritten after each size: a long run interrupted keeps the shorter ones
        runs.append(run_child(source, steps, args.model))
        result = {
            "command": "python -m benchmarks.bench_pretrain " + " ".join(sys.argv[1:] if argv is None else argv),
            "runs": runs,
            "wall_seconds": time.perf_counter() - started,
            "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        }
        args.out.write_text(json.dumps(result, indent=1))
    print(table(runs))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
