"""Capacity study: which depth x width of the spike model to use by default, from evidence.

Trains a grid of :class:`SpikeDetector` sizes on a window set (default: the synthetic patients A-D through the real
conversion pipeline, 1 s windows) with the same number of updates each, and reports validation AUPRC / F1,
parameter count, FLOPs and inference speed (channel-windows per second of the form inference runs, float32). The
split is temporal within each patient: the first ``--train-fraction`` of each patient's windows train, the rest
validate (adjacent windows are correlated, so a random split would flatter the models).

    python -m benchmarks.capacity_study                      # the default grid (about 10 minutes on 2 cores)
    python -m benchmarks.capacity_study --quick              # a tiny grid, to check that it runs
    python -m benchmarks.capacity_study --windowset my.npz --depths 2 4 --widths 16 32

Writes ``benchmarks/results/capacity.json`` and ``capacity.png`` (``--out`` changes the JSON path; the PNG goes
next to it) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_model import best_seconds, network_call
from converters.windowset import WindowSet, load_windowset, synthetic_windowset
from ls_backend.model import SpikeDetector
from ls_backend.model.estimator import inference_batch_size
from ls_backend.model.metrics import auprc, best_threshold, f1_at
from ls_backend.model.resnet1d import inference_network

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "capacity.json"
CACHE = HERE / "_data" / "windowsets"


def temporal_split(ws: WindowSet, train_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Boolean train / validation masks: the first part of each group's windows trains."""
    groups = ws.groups if ws.groups is not None else np.zeros(len(ws), str)
    train = np.zeros(len(ws), bool)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        train[rows[: int(round(train_fraction * len(rows)))]] = True
    return train, ~train


def inference_rate(det: SpikeDetector, n_times: int) -> float:
    """Channel-windows per second of the network as inference runs it: packed, one stream per thread, at the
    batch size the estimator picks for its width (see ``benchmarks/bench_model.py``)."""
    threads, batch = torch.get_num_threads(), inference_batch_size(det.width, n_times)
    call, n_scored = network_call(inference_network(det.module_), batch, n_times, "float32", threads, threads)
    return n_scored / best_seconds(call)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    if args.windowset:
        ws = load_windowset(args.windowset)
        source = str(args.windowset)
    else:
        minutes = 2.0 if args.quick else args.minutes
        ws = synthetic_windowset(("A", "B", "C", "D"), minutes=minutes, cache_dir=CACHE)
        source = f"synthetic A-D, {minutes} min each, 1 s windows"
    train, val = temporal_split(ws, args.train_fraction)
    tr, va = ws.subset(train), ws.subset(val)
    mean_chans = float(np.isfinite(ws.X[:, :, 0]).sum(axis=1).mean())
    print(
        f"{source}: {len(tr)} train / {len(va)} validation windows, prevalence {va.y.mean():.3f}, "
        f"{mean_chans:.1f} channels per window, {torch.get_num_threads()} threads"
    )
    rows = []
    for depth in args.depths:
        for width in args.widths:
            for seed in range(args.seed_start, args.seed_start + args.seeds):
                cycle = args.dilation_cycle
                dilation = tuple(cycle[i % len(cycle)] for i in range(depth)) if len(cycle) > 1 else cycle[0]
                det = SpikeDetector(
                    width=width,
                    depth=depth,
                    kernel_size=args.kernel_size,
                    dilation=dilation,
                    epochs=args.epochs,
                    samples_per_epoch=args.samples_per_epoch,
                    sfreq=ws.sfreq,
                    seed=seed,
                )
                start = time.perf_counter()
                det.fit(tr.X, tr.y, dense_targets=tr.y_dense)
                fit_seconds = time.perf_counter() - start
                proba = det.predict_proba(va.X)
                row = {
                    "depth": depth,
                    "width": width,
                    "seed": seed,
                    "kernel_size": args.kernel_size,
                    "dilation": list(dilation) if isinstance(dilation, tuple) else dilation,
                    "parameters": det.n_parameters,
                    "mflop_per_channel_window": det.flops_per_channel_window(ws.X.shape[2]) / 1e6,
                    "val_auprc": auprc(va.y, proba),
                    "val_f1_at_0.5": f1_at(va.y, proba, 0.5),
                    "val_best_f1": best_threshold(va.y, proba)[1],
                    "fit_seconds": fit_seconds,
                    "channel_windows_per_second": inference_rate(det, ws.X.shape[2]),
                }
                row["windows_per_second"] = row["channel_windows_per_second"] / mean_chans
                if va.groups is not None:
                    row["val_auprc_by_group"] = {
                        str(g): auprc(va.y[va.groups == g], proba[va.groups == g]) for g in np.unique(va.groups)
                    }
                rows.append(row)
                print(
                    f"depth {depth:2d} width {width:3d} seed {seed}: AUPRC {row['val_auprc']:.3f} "
                    f"F1 {row['val_f1_at_0.5']:.3f} ({row['parameters']} params, {fit_seconds:.0f} s fit, "
                    f"{row['channel_windows_per_second']:.0f} ch-win/s) "
                    f"{ {g: round(v, 2) for g, v in row.get('val_auprc_by_group', {}).items()} }",
                    flush=True,
                )
    return {
        "source": source,
        "n_train": len(tr),
        "n_val": len(va),
        "val_prevalence": float(va.y.mean()),
        "mean_channels_per_window": mean_chans,
        "epochs": args.epochs,
        "samples_per_epoch": args.samples_per_epoch,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "rows": rows,
    }


def summarize(result: dict) -> list[dict]:
    """Mean over seeds per (depth, width)."""

    def key(r: dict) -> tuple:
        return r["depth"], r["width"], json.dumps(r.get("dilation", 1))

    keys = sorted({key(r) for r in result["rows"]})
    out = []
    for depth, width, dilation in keys:
        rs = [r for r in result["rows"] if key(r) == (depth, width, dilation)]
        skip = ("depth", "width", "seed", "val_auprc_by_group", "dilation")
        mean = {k: float(np.mean([r[k] for r in rs])) for k in rs[0] if k not in skip}
        if "val_auprc_by_group" in rs[0]:
            mean["val_auprc_by_group"] = {
                g: float(np.mean([r["val_auprc_by_group"][g] for r in rs])) for g in rs[0]["val_auprc_by_group"]
            }
        out.append(
            {"depth": depth, "width": width, "dilation": json.loads(dilation), "n_seeds": len(rs)}
            | mean
            | {"val_auprc_std": float(np.std([r["val_auprc"] for r in rs]))}
        )
    return out


def table(summary: list[dict]) -> str:
    lines = [
        "| depth | width | dilation | seeds | params | MFLOP/ch-win | val AUPRC | val F1@0.5 | best F1 | fit s "
        "| ch-win/s |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary:
        dilation = r["dilation"] if isinstance(r["dilation"], int) else ",".join(map(str, r["dilation"]))
        lines.append(
            f"| {r['depth']} | {r['width']} | {dilation} | {r['n_seeds']} | {r['parameters']:.0f} | "
            f"{r['mflop_per_channel_window']:.1f} | "
            f"{r['val_auprc']:.3f} ± {r['val_auprc_std']:.3f} | {r['val_f1_at_0.5']:.3f} | "
            f"{r['val_best_f1']:.3f} | {r['fit_seconds']:.0f} | {r['channel_windows_per_second']:.0f} |"
        )
    return "\n".join(lines)


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for depth in sorted({r["depth"] for r in summary}):
        rs = [r for r in summary if r["depth"] == depth and r["dilation"] == 1]
        if not rs:
            continue
        axes[0].errorbar(
            [r["parameters"] for r in rs],
            [r["val_auprc"] for r in rs],
            yerr=[r["val_auprc_std"] for r in rs],
            marker="o",
            label=f"depth {depth}",
            capsize=3,
        )
        axes[1].plot(
            [r["channel_windows_per_second"] for r in rs], [r["val_auprc"] for r in rs], "o-", label=f"depth {depth}"
        )
        for r in rs:
            axes[1].annotate(f"w{r['width']}", (r["channel_windows_per_second"], r["val_auprc"]), fontsize=8)
    dilated = [r for r in summary if r["dilation"] != 1]
    for ax, x in ((axes[0], "parameters"), (axes[1], "channel_windows_per_second")):
        if dilated:
            ax.plot([r[x] for r in dilated], [r["val_auprc"] for r in dilated], "k*", ms=10, label="dilated")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("parameters")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("inference channel-windows / s (float32)")
    for ax in axes:
        ax.set_ylabel("validation AUPRC")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Spike model capacity study")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windowset", type=Path, help="a window set file (.npz/.h5); default: synthetic A-D")
    parser.add_argument("--minutes", type=float, default=5.0, help="synthetic minutes per patient")
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--kernel-size", type=int, default=7)
    parser.add_argument(
        "--dilation-cycle",
        type=int,
        nargs="+",
        default=[1],
        help="dilation of block i is the i-th of these, cycled (e.g. 1 2 4 8)",
    )
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--samples-per-epoch", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny grid and data: checks that it runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--append", action="store_true", help="add these runs (more seeds, other sizes) to the rows already in --out"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.depths, args.widths, args.epochs, args.samples_per_epoch = [1, 2], [8, 16], 3, 64
    result = run(args)
    if args.append and args.out.exists():
        previous = json.loads(args.out.read_text())
        if previous.get("source") != result["source"]:
            raise SystemExit(f"--append: {args.out} holds runs on {previous.get('source')!r}, not {result['source']!r}")
        result["rows"] = previous["rows"] + result["rows"]
    result["summary"] = summarize(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    plot(result["summary"], args.out.with_suffix(".png"))
    print(table(result["summary"]))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
